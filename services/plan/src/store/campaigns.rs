//! Campaigns and their plan links.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Lock;
use crate::domain::campaign::Campaign;
use crate::error::Error;

#[derive(QueryableByName)]
struct CampaignRow {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    plan_id: Option<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    shared_with: Vec<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    outreach_started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    archived_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

impl From<CampaignRow> for Campaign {
    fn from(row: CampaignRow) -> Campaign {
        Campaign {
            brand_id: row.brand_id,
            id: row.id,
            name: row.name,
            plan_id: row.plan_id,
            shared_with: row.shared_with,
            outreach_started_at: row.outreach_started_at,
            archived_at: row.archived_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

// Archived campaigns count as sharing: they keep tracking sales.
const COLUMNS: &str = "c.brand_id, c.id, c.name, c.plan_id, \
    array(select o.id from campaigns o where o.brand_id = c.brand_id and o.plan_id = c.plan_id \
          and o.id <> c.id order by o.id) as shared_with, \
    c.outreach_started_at, c.archived_at, c.created_at, c.updated_at";

/// A campaign by its key. Statements that take one campaign join its key from an `unnest`
/// rather than compare with constants: for a brand the statistics have not seen yet, the planner
/// found `campaigns_brand_plan` as cheap as the primary key and read the brand's every campaign
/// (tracking_db::stale_statistics; tests/stale_statistics.rs).
const BY_KEY: &str = "unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_id)";

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

pub async fn insert(conn: &mut AsyncPgConnection, brand_id: i64, name: &str) -> Result<i64, Error> {
    let row: IdRow = tracking_db::prepared(
        "insert into campaigns (brand_id, name) values ($1, $2) returning id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Text, _>(name)
    .get_result(conn)
    .await?;
    Ok(row.id)
}

/// The clause locking the campaign rows a read returns (`for update` cannot apply to their
/// array subquery: the campaign rows only).
fn row_lock(lock: Lock) -> &'static str {
    match lock {
        Lock::None => "",
        Lock::ForShare => " for share of c",
        Lock::ForUpdate => " for update of c",
    }
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    lock: Lock,
) -> Result<Option<Campaign>, Error> {
    let lock = row_lock(lock);
    let sql = format!(
        "select {COLUMNS} from {BY_KEY} \
         join campaigns c on c.brand_id = k.key_brand and c.id = k.key_id{lock}"
    );
    let rows: Vec<CampaignRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(id)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next().map(Campaign::from))
}

/// Newest first; `before` is the last id of the previous page.
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    include_archived: bool,
    plan_id: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Campaign>, Error> {
    // The brand is joined as a key, the plan stays a constant (tracking_db::stale_statistics): with
    // a brand constant the statistics had not seen, the primary key looked as cheap as
    // campaigns_brand_plan, and a plan's page read the brand's every campaign. (No index holds a
    // plan's campaigns by id: its page sorts them, as `shared_with` reads them for each row.)
    let sql = format!(
        "select {COLUMNS} from unnest(array[$1::bigint]) as k(key_brand) \
         cross join lateral (select * from campaigns p where p.brand_id = k.key_brand \
           and ($2 or p.archived_at is null) and ($3::bigint is null or p.plan_id = $3) \
           and ($4::bigint is null or p.id < $4) order by p.id desc limit $5) c \
         order by c.id desc"
    );
    let rows: Vec<CampaignRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<Bool, _>(include_archived)
        .bind::<Nullable<BigInt>, _>(plan_id)
        .bind::<Nullable<BigInt>, _>(before)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Campaign::from).collect())
}

/// Every campaign (archived included) linked to `plan_id`, by id.
pub async fn using_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
    lock: Lock,
) -> Result<Vec<Campaign>, Error> {
    let lock = row_lock(lock);
    let sql = format!(
        "select {COLUMNS} from unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_plan) \
         join campaigns c on c.brand_id = k.key_brand and c.plan_id = k.key_plan order by c.id{lock}"
    );
    let rows: Vec<CampaignRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(plan_id)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Campaign::from).collect())
}

pub async fn set_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    plan_id: i64,
) -> Result<(), Error> {
    tracking_db::prepared(format!(
        "update campaigns c set plan_id = $3, updated_at = now() from {BY_KEY} \
         where c.brand_id = k.key_brand and c.id = k.key_id"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .bind::<BigInt, _>(plan_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn start_outreach(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
) -> Result<(), Error> {
    tracking_db::prepared(format!(
        "update campaigns c set outreach_started_at = now(), updated_at = now() from {BY_KEY} \
         where c.brand_id = k.key_brand and c.id = k.key_id and c.outreach_started_at is null"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn archive(conn: &mut AsyncPgConnection, brand_id: i64, id: i64) -> Result<(), Error> {
    tracking_db::prepared(format!(
        "update campaigns c set archived_at = now(), updated_at = now() from {BY_KEY} \
         where c.brand_id = k.key_brand and c.id = k.key_id and c.archived_at is null"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}
