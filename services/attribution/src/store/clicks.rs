//! Clicks: written in batches (one statement per batch, with the daily counts), read back to
//! attribute orders by click id and to tell whether a code's order followed a click.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{ByTaken, Database, DbError, Taken};

/// One click, as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClickRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = Text)]
    pub click_id: String,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub clicked_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub referrer_host: String,
    #[diesel(sql_type = Text)]
    pub country: String,
    #[diesel(sql_type = Text)]
    pub agent_class: String,
    #[diesel(sql_type = Text)]
    pub visitor_hash: String,
}

/// Stores `clicks` and adds them to the daily counts, in the caller's transaction. A click id
/// seen before is skipped or fails the statement ([`Taken`], for [`tracking_db::Conflicts`]).
/// Returns how many were stored.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    clicks: &[ClickRow],
    taken: Taken,
) -> Result<usize, DbError> {
    if clicks.is_empty() {
        return Ok(0);
    }
    static SQL: LazyLock<ByTaken> = LazyLock::new(|| ByTaken::new(inserting));
    let col = |f: fn(&ClickRow) -> i64| clicks.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&ClickRow) -> &str| clicks.iter().map(f).collect::<Vec<&str>>();
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Bool)]
        _inserted: bool,
    }
    let inserted: Vec<Inserted> = tracking_db::prepared(SQL.get(taken))
        .bind::<Array<BigInt>, _>(col(|c| c.brand_id))
        .bind::<Array<Text>, _>(text(|c| c.click_id.as_str()))
        .bind::<Array<BigInt>, _>(col(|c| c.code_id))
        .bind::<Array<BigInt>, _>(col(|c| c.integration_id))
        .bind::<Array<BigInt>, _>(col(|c| c.campaign_id))
        .bind::<Array<BigInt>, _>(col(|c| c.creator_id))
        .bind::<Array<BigInt>, _>(col(|c| c.plan_id))
        .bind::<Array<Timestamptz>, _>(clicks.iter().map(|c| c.clicked_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(text(|c| c.referrer_host.as_str()))
        .bind::<Array<Text>, _>(text(|c| c.country.as_str()))
        .bind::<Array<Text>, _>(text(|c| c.agent_class.as_str()))
        .bind::<Array<Text>, _>(text(|c| c.visitor_hash.as_str()))
        .load(conn)
        .await?;
    Ok(inserted.len())
}

/// [`insert`]'s statement. Planned once on the click writer's connection
/// ([`tracking_db::PoolOptions::generic_plans`]): it reads no table but through the unique
/// indexes its inserts probe, so one plan is right at any size.
fn inserting(taken: Taken) -> String {
    format!(
        "with new as (
             insert into clicks (brand_id, click_id, code_id, integration_id, campaign_id,
                 creator_id, plan_id, clicked_at, referrer_host, country, agent_class, visitor_hash)
             select * from unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                 $5::bigint[], $6::bigint[], $7::bigint[], $8::timestamptz[], $9::text[],
                 $10::text[], $11::text[], $12::text[])
             {}
             returning brand_id, campaign_id, creator_id, (clicked_at at time zone 'UTC')::date as day
         ), counted as (
             insert into daily_clicks (brand_id, campaign_id, creator_id, day, clicks)
             select brand_id, campaign_id, creator_id, day, count(*) from new
             group by brand_id, campaign_id, creator_id, day
             on conflict (brand_id, campaign_id, creator_id, day)
             do update set clicks = daily_clicks.clicks + excluded.clicks
         )
         select true as _inserted from new",
        taken.on_conflict()
    )
}

/// The clicks among `ids` (brand, click id).
pub async fn by_ids(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, &str)],
) -> Result<Vec<ClickRow>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "select * from clicks where (brand_id, click_id) in
             (select * from unnest($1::bigint[], $2::text[]))",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(ids.iter().map(|i| i.1).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// The code whose link a stored click followed, if `click_id` is stored for the brand.
pub async fn code_of(db: &Database, brand_id: i64, click_id: &str) -> Result<Option<i64>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        code_id: i64,
    }
    let mut conn = db.conn().await?;
    let rows: Vec<Row> =
        tracking_db::prepared("select code_id from clicks where brand_id = $1 and click_id = $2")
            .bind::<BigInt, _>(brand_id)
            .bind::<Text, _>(click_id)
            .load(&mut conn)
            .await?;
    Ok(rows.into_iter().next().map(|r| r.code_id))
}

/// A creator's links in a campaign: (brand, campaign, creator).
pub type CreatorLinks = (i64, i64, i64);

/// For each (links, until): the latest click on the creator's links in the campaign at or before
/// `until`. One answer per question, in order.
pub async fn latest_clicks(
    conn: &mut AsyncPgConnection,
    questions: &[(CreatorLinks, DateTime<Utc>)],
) -> Result<Vec<Option<DateTime<Utc>>>, DbError> {
    if questions.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Latest {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        clicked_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Latest> = tracking_db::prepared(
        "select (select max(k.clicked_at) from clicks k where k.brand_id = q.b
                     and k.campaign_id = q.c and k.creator_id = q.r and k.clicked_at <= q.until)
                     as clicked_at
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[])
             with ordinality as q(b, c, r, until, n)
         order by q.n",
    )
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.2).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(questions.iter().map(|q| q.1).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.clicked_at).collect())
}

/// For each (links, from, to): whether the creator's links in the campaign were clicked between
/// `from` and `to`, both included. One answer per question, in order.
pub async fn clicked_between(
    conn: &mut AsyncPgConnection,
    questions: &[(CreatorLinks, DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<bool>, DbError> {
    if questions.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let rows: Vec<Found> = tracking_db::prepared(
        "select exists (select 1 from clicks k where k.brand_id = q.b and k.campaign_id = q.c
                     and k.creator_id = q.r and k.clicked_at between q.f and q.t) as found
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[],
             $5::timestamptz[]) with ordinality as q(b, c, r, f, t, n)
         order by q.n",
    )
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(questions.iter().map(|q| q.0.2).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(questions.iter().map(|q| q.1).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(questions.iter().map(|q| q.2).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.found).collect())
}
