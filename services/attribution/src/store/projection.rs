//! The projection of plans, campaigns and codes from the upstream streams.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

use crate::domain::attribution::{CLOCK_SKEW, CommissionHistory, CommissionRule};

/// A plan, as attribution needs it.
#[derive(Debug, Clone, QueryableByName)]
pub struct PlanRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Nullable<Integer>)]
    pub commission_bps: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub commission_fixed_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub commission_currency: Option<String>,
    #[diesel(sql_type = Integer)]
    pub attribution_window_days: i32,
    #[diesel(sql_type = Integer)]
    pub holding_period_days: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub ends_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    pub report_visible: bool,
}

/// Stores the plan as of `changed_at`, keeping its commission's history
/// ([`record_commission`]).
pub async fn upsert_plan(
    conn: &mut AsyncPgConnection,
    plan: &PlanRow,
    changed_at: DateTime<Utc>,
) -> Result<(), DbError> {
    tracking_db::prepared(
        "insert into plans (brand_id, plan_id, integration_id, provider, commission_bps,
             commission_fixed_minor, commission_currency, attribution_window_days,
             holding_period_days, ends_at, report_visible)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (brand_id, plan_id) do update set
             integration_id = excluded.integration_id, provider = excluded.provider,
             commission_bps = excluded.commission_bps,
             commission_fixed_minor = excluded.commission_fixed_minor,
             commission_currency = excluded.commission_currency,
             attribution_window_days = excluded.attribution_window_days,
             holding_period_days = excluded.holding_period_days,
             ends_at = excluded.ends_at, report_visible = excluded.report_visible",
    )
    .bind::<BigInt, _>(plan.brand_id)
    .bind::<BigInt, _>(plan.plan_id)
    .bind::<BigInt, _>(plan.integration_id)
    .bind::<Text, _>(&plan.provider)
    .bind::<Nullable<Integer>, _>(plan.commission_bps)
    .bind::<Nullable<BigInt>, _>(plan.commission_fixed_minor)
    .bind::<Nullable<Text>, _>(plan.commission_currency.as_deref())
    .bind::<Integer, _>(plan.attribution_window_days)
    .bind::<Integer, _>(plan.holding_period_days)
    .bind::<Nullable<Timestamptz>, _>(plan.ends_at)
    .bind::<Bool, _>(plan.report_visible)
    .execute(conn)
    .await?;
    record_commission(conn, plan, changed_at).await
}

/// Records the plan's commission as of `changed_at` when it differs from the one in effect last
/// (the plan's first commission applies from the beginning of time).
async fn record_commission(
    conn: &mut AsyncPgConnection,
    plan: &PlanRow,
    changed_at: DateTime<Utc>,
) -> Result<(), DbError> {
    tracking_db::prepared(
        "with last as (
             select * from plan_commissions where brand_id = $1 and plan_id = $2
             order by effective_from desc limit 1)
         insert into plan_commissions (brand_id, plan_id, effective_from, commission_bps,
                                       commission_fixed_minor, commission_currency)
         select $1, $2, case when exists (select 1 from last) then $3 else '-infinity' end,
                $4, $5, $6
         where not exists (
             select 1 from last where commission_bps is not distinct from $4
                 and commission_fixed_minor is not distinct from $5
                 and commission_currency is not distinct from $6)
         on conflict (brand_id, plan_id, effective_from) do update set
             commission_bps = excluded.commission_bps,
             commission_fixed_minor = excluded.commission_fixed_minor,
             commission_currency = excluded.commission_currency",
    )
    .bind::<BigInt, _>(plan.brand_id)
    .bind::<BigInt, _>(plan.plan_id)
    .bind::<Timestamptz, _>(changed_at)
    .bind::<Nullable<Integer>, _>(plan.commission_bps)
    .bind::<Nullable<BigInt>, _>(plan.commission_fixed_minor)
    .bind::<Nullable<Text>, _>(plan.commission_currency.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// A plan's commission from `effective_from` on.
#[derive(Debug, Clone, QueryableByName)]
pub struct CommissionRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub effective_from: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub commission_bps: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub commission_fixed_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub commission_currency: Option<String>,
}

/// The commission history of each of the plans `ids` (brand, plan id) that has one.
pub async fn commission_histories(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<HashMap<(i64, i64), CommissionHistory>, DbError> {
    let mut histories: HashMap<(i64, i64), CommissionHistory> = HashMap::new();
    for row in commissions(conn, ids).await? {
        let rule = CommissionRule::from_columns(
            row.commission_bps,
            row.commission_fixed_minor,
            row.commission_currency.as_deref(),
        );
        histories
            .entry((row.brand_id, row.plan_id))
            .or_default()
            .push((row.effective_from, rule));
    }
    Ok(histories)
}

/// The commissions of the plans `ids` over time, oldest first per plan.
async fn commissions(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<CommissionRow>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // '-infinity' is read as the earliest time chrono knows.
    Ok(tracking_db::prepared(
        "select brand_id, plan_id,
                greatest(effective_from, '0001-01-01T00:00:00Z'::timestamptz) as effective_from,
                commission_bps, commission_fixed_minor, commission_currency
         from plan_commissions where (brand_id, plan_id) in
             (select * from unnest($1::bigint[], $2::bigint[]))
         order by brand_id, plan_id, effective_from",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.1).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

pub async fn get_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
) -> Result<Option<PlanRow>, DbError> {
    let rows: Vec<PlanRow> =
        tracking_db::prepared("select * from plans where brand_id = $1 and plan_id = $2")
            .bind::<BigInt, _>(brand_id)
            .bind::<BigInt, _>(plan_id)
            .load(conn)
            .await?;
    Ok(rows.into_iter().next())
}

/// The plans among `ids` (brand, plan id).
pub async fn plans(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<PlanRow>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "select * from plans where (brand_id, plan_id) in
             (select * from unnest($1::bigint[], $2::bigint[]))",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.1).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

pub async fn upsert_campaign(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    plan_id: i64,
    archived: bool,
) -> Result<(), DbError> {
    tracking_db::prepared(
        "insert into campaigns (brand_id, campaign_id, plan_id, archived) values ($1, $2, $3, $4)
         on conflict (brand_id, campaign_id) do update
         set plan_id = excluded.plan_id, archived = excluded.archived",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(plan_id)
    .bind::<Bool, _>(archived)
    .execute(conn)
    .await?;
    Ok(())
}

/// A campaign and the plan it is linked to.
#[derive(Debug, Clone, QueryableByName)]
pub struct CampaignOfPlan {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
}

/// Every campaign linked to each of the plans `ids` (several when a plan is shared), archived
/// ones included, by campaign id.
pub async fn campaigns_of_plans(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<CampaignOfPlan>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "select brand_id, plan_id, campaign_id from campaigns where (brand_id, plan_id) in
             (select * from unnest($1::bigint[], $2::bigint[]))
         order by campaign_id",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.1).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// The campaign's plan, if the campaign is known (0 when none is linked), on a connection of
/// its own.
pub async fn campaign_plan(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
) -> Result<Option<i64>, DbError> {
    let mut conn = db.conn().await?;
    plan_of_campaign(&mut conn, brand_id, campaign_id).await
}

/// The plan linked to a campaign (0 when none is), if the campaign is known.
pub async fn plan_of_campaign(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
) -> Result<Option<i64>, DbError> {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = BigInt)]
        plan_id: i64,
    }
    let rows: Vec<Plan> = tracking_db::prepared(
        // The key joined (see tracking_db::stale_statistics): with constants, a planner whose
        // statistics had not seen the brand read all its campaigns through campaigns_plan.
        "select c.plan_id
         from unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_campaign)
         join campaigns c on c.brand_id = k.key_brand and c.campaign_id = k.key_campaign",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.plan_id))
}

/// A code and its tracking link.
#[derive(Debug, Clone, QueryableByName)]
pub struct CodeRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = Text)]
    pub slug: String,
    #[diesel(sql_type = Text)]
    pub destination_url: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    pub active: bool,
    #[diesel(sql_type = BigInt)]
    pub version: i64,
    /// Since when the code has had its text (minted or renamed to it); `None` when not known
    /// (no bound).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub text_since: Option<DateTime<Utc>>,
}

/// A code as its event tells it, with the time of the change, and whether the text it had
/// before (if another) was the code's at the store: a text the store turned down as taken never
/// was, and orders using it are not the code's.
#[derive(Debug, Clone)]
pub struct CodeChange {
    pub row: CodeRow,
    pub changed_at: DateTime<Utc>,
    /// The text the code's last rename (to its text now) came from; empty when it has none.
    /// Kept as a former text, valid until `changed_at`, unless the rename was the store turning
    /// it down (`collided`). A text the code leaves with no rename from it (an edit the store
    /// refused, announced while it was asked and then put back) was never the code's: see
    /// [`Dropped`].
    pub renamed_from: String,
    pub collided: bool,
}

/// A text a code left with no rename from it ([`CodeChange::renamed_from`]): held only while an
/// edit the store refused was being made.
#[derive(Debug, QueryableByName)]
pub struct Dropped {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    /// Lower-cased.
    #[diesel(sql_type = Text)]
    pub text_lower: String,
    /// Since when the code had it, when known.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub since: Option<DateTime<Utc>>,
    /// When the code left it.
    #[diesel(sql_type = Timestamptz)]
    pub left_at: DateTime<Utc>,
}

/// Stores each code as of its time; a text a code had before (a brand's rename) is kept in
/// `code_texts`, valid until then. One statement for all of them, so the codes must be distinct
/// (a code changed twice goes in two calls, in order). Returns the texts codes left with no
/// rename from them.
pub async fn upsert_codes(
    conn: &mut AsyncPgConnection,
    codes: &[CodeChange],
) -> Result<Vec<Dropped>, DbError> {
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&CodeRow) -> i64| codes.iter().map(|c| f(&c.row)).collect::<Vec<_>>();
    let text = |f: fn(&CodeRow) -> &str| {
        codes
            .iter()
            .map(|c| f(&c.row).to_owned())
            .collect::<Vec<_>>()
    };
    Ok(tracking_db::prepared(
        // One statement: the former texts are read from the rows as they were before this
        // upsert (every part of a statement sees the same snapshot). An event that changes
        // nothing attribution keeps (a code's pending -> active, say) is left out before the
        // upsert: its conflict would still lock, and so write, the row.
        "with input as (
             select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                 $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[],
                 $10::timestamptz[], $11::bool[], $12::timestamptz[], $13::timestamptz[],
                 $14::text[], $15::bool[])
             as i(brand_id, code_id, campaign_id, creator_id, plan_id, integration_id, code, slug,
                 destination_url, expires_at, active, changed_at, text_since, renamed_from,
                 collided)),
         current as materialized (
             select i.*, c.code_id as current_id, c.integration_id as current_integration_id,
                 c.code as current_code, c.text_since as current_since,
                 -- Since when the code has its text: the earliest moment known while the text
                 -- stays (none for a code projected before this was kept), the event's for a
                 -- new text.
                 case when c.code_id is not null and c.code = i.code
                     then case when c.text_since is null then null
                               else least(c.text_since, i.text_since) end
                     else i.text_since end as since,
                 (c.campaign_id, c.creator_id, c.plan_id, c.integration_id, c.code, c.slug,
                  c.destination_url, c.expires_at, c.active)
                 is not distinct from
                 (i.campaign_id, i.creator_id, i.plan_id, i.integration_id, i.code, i.slug,
                  i.destination_url, i.expires_at, i.active) as links_unchanged
             from input i left join codes c on c.brand_id = i.brand_id and c.code_id = i.code_id),
         former as (
             insert into code_texts (brand_id, integration_id, code_lower, code_id, valid_until,
                 valid_from)
             select brand_id, current_integration_id, lower(current_code), code_id, changed_at,
                 current_since
             from current
             where current_code <> '' and lower(current_code) <> lower(code)
                 and lower(current_code) = lower(renamed_from) and not collided
             on conflict do nothing),
         upserted as (
         insert into codes (brand_id, code_id, campaign_id, creator_id, plan_id, integration_id,
             code, slug, destination_url, expires_at, active, text_since)
         select brand_id, code_id, campaign_id, creator_id, plan_id, integration_id, code, slug,
             destination_url, expires_at, active, since
         from current
         where not (current_id is not null and links_unchanged
             and current_since is not distinct from since)
         on conflict (brand_id, code_id) do update set
             campaign_id = excluded.campaign_id, creator_id = excluded.creator_id,
             plan_id = excluded.plan_id, integration_id = excluded.integration_id,
             code = excluded.code, slug = excluded.slug,
             destination_url = excluded.destination_url, expires_at = excluded.expires_at,
             active = excluded.active, text_since = excluded.text_since,
             -- The redirect's cache follows the version: a new one only when a link changed.
             version = case when
                 (codes.campaign_id, codes.creator_id, codes.plan_id, codes.integration_id,
                  codes.code, codes.slug, codes.destination_url, codes.expires_at, codes.active)
                 is not distinct from
                 (excluded.campaign_id, excluded.creator_id, excluded.plan_id,
                  excluded.integration_id, excluded.code, excluded.slug,
                  excluded.destination_url, excluded.expires_at, excluded.active)
                 then codes.version else nextval('codes_version') end)
         select brand_id, code_id, lower(current_code) as text_lower, current_since as since,
             changed_at as left_at
         from current
         where current_code <> '' and lower(current_code) <> lower(code)
             and lower(current_code) <> lower(renamed_from)",
    )
    .bind::<Array<BigInt>, _>(column(|c| c.brand_id))
    .bind::<Array<BigInt>, _>(column(|c| c.code_id))
    .bind::<Array<BigInt>, _>(column(|c| c.campaign_id))
    .bind::<Array<BigInt>, _>(column(|c| c.creator_id))
    .bind::<Array<BigInt>, _>(column(|c| c.plan_id))
    .bind::<Array<BigInt>, _>(column(|c| c.integration_id))
    .bind::<Array<Text>, _>(text(|c| &c.code))
    .bind::<Array<Text>, _>(text(|c| &c.slug))
    .bind::<Array<Text>, _>(text(|c| &c.destination_url))
    .bind::<Array<Nullable<Timestamptz>>, _>(
        codes.iter().map(|c| c.row.expires_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(codes.iter().map(|c| c.row.active).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(codes.iter().map(|c| c.changed_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        codes.iter().map(|c| c.row.text_since).collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        codes
            .iter()
            .map(|c| c.renamed_from.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(codes.iter().map(|c| c.collided).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// A text a code had before a brand's edit, which the store went on taking after the edit until
/// `released_at` (its discount there could not be changed at once).
#[derive(Debug, Clone)]
pub struct Released {
    pub brand_id: i64,
    pub code_id: i64,
    /// The text, lower-cased.
    pub text_lower: String,
    /// When the edit was made.
    pub renamed_at: DateTime<Utc>,
    pub released_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct TextKey {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    integration_id: i64,
    #[diesel(sql_type = Text)]
    code_lower: String,
}

/// Holds each former text the code's until the store stopped taking it: its span (the one that
/// ended at the edit, give or take a store's clock skew) now ends at `released_at`. Returns the
/// texts whose span grew, `(brand, integration, text)`: orders placed with them meanwhile
/// waited for a holder. A release seen again changes nothing.
pub async fn extend_former_texts(
    conn: &mut AsyncPgConnection,
    released: &[Released],
) -> Result<Vec<(i64, i64, String)>, DbError> {
    if released.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<TextKey> = tracking_db::prepared(
        "update code_texts t set valid_until = r.released_at
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[],
             $5::timestamptz[]) as r(b, code, text, renamed_at, released_at)
         where t.brand_id = r.b and t.code_id = r.code and t.code_lower = r.text
             and t.valid_until = (select min(n.valid_until) from code_texts n
                 where n.brand_id = r.b and n.code_id = r.code and n.code_lower = r.text
                     and n.valid_until >= r.renamed_at - make_interval(secs => $6::bigint))
             and t.valid_until < r.released_at
             -- Extended already (the text left and regained within the skew: another of its
             -- spans may be the nearest now), and the key is the code's and the end's.
             and not exists (select 1 from code_texts e where e.brand_id = r.b
                 and e.code_id = r.code and e.valid_until = r.released_at)
         returning t.brand_id, t.integration_id, t.code_lower",
    )
    .bind::<Array<BigInt>, _>(released.iter().map(|r| r.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(released.iter().map(|r| r.code_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        released
            .iter()
            .map(|r| r.text_lower.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(released.iter().map(|r| r.renamed_at).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(released.iter().map(|r| r.released_at).collect::<Vec<_>>())
    .bind::<BigInt, _>(CLOCK_SKEW.num_seconds())
    .load(conn)
    .await?;
    Ok(keys
        .into_iter()
        .map(|k| (k.brand_id, k.integration_id, k.code_lower))
        .collect())
}

/// A code found by its lower-cased text.
#[derive(Debug, Clone, QueryableByName)]
pub struct MatchedCode {
    /// The lower-cased code it was looked up by.
    #[diesel(sql_type = Text)]
    pub matched: String,
    /// Set when the text is one the code had before a rename: until when it was the code's.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Since when the code had the text (`None`: not known, no bound).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub valid_from: Option<DateTime<Utc>>,
    #[diesel(embed)]
    pub code: CodeRow,
}

/// The codes matching each (brand, integration, lower-cased code), compared case-insensitively:
/// those with that text now, and those that had it before a rename.
pub async fn codes_matching(
    conn: &mut AsyncPgConnection,
    wanted: &[(i64, i64, &str)],
) -> Result<Vec<MatchedCode>, DbError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "with w(brand_id, integration_id, lower_code) as (
             select distinct * from unnest($1::bigint[], $2::bigint[], $3::text[]))
         select w.lower_code as matched, null::timestamptz as valid_until,
             c.text_since as valid_from, c.*
         from w join codes c on c.brand_id = w.brand_id and c.integration_id = w.integration_id
             and c.code <> '' and lower(c.code) = w.lower_code
         union all
         select w.lower_code, t.valid_until, t.valid_from, c.*
         from w join code_texts t on t.brand_id = w.brand_id
                 and t.integration_id = w.integration_id and t.code_lower = w.lower_code
             join codes c on c.brand_id = t.brand_id and c.code_id = t.code_id
         order by creator_id, code_id",
    )
    .bind::<Array<BigInt>, _>(wanted.iter().map(|w| w.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(wanted.iter().map(|w| w.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(wanted.iter().map(|w| w.2).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// The codes among `ids` (brand, code id).
pub async fn codes(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<CodeRow>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "select * from codes where (brand_id, code_id) in
             (select * from unnest($1::bigint[], $2::bigint[]))",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.1).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// Codes changed after `version`, oldest change first (the slug cache follows them).
pub async fn codes_after(db: &Database, version: i64, limit: i64) -> Result<Vec<CodeRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(tracking_db::prepared(
        "select * from codes where version > $1 and slug <> '' order by version limit $2",
    )
    .bind::<BigInt, _>(version)
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}

/// A code by its slug (RecordClick, and a cache miss on a code the cache has not seen yet).
pub async fn code_by_slug(db: &Database, slug: &str) -> Result<Option<CodeRow>, DbError> {
    let mut conn = db.conn().await?;
    let rows: Vec<CodeRow> = tracking_db::prepared("select * from codes where slug = $1")
        .bind::<Text, _>(slug)
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().next())
}
