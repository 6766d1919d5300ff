//! The projection of PlanService: plans, campaigns, rosters as minting needs them.

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;

use crate::domain::{Campaign, Plan, Profile, RosterStatus, Trigger};
use crate::error::Error;

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("encoding: {e}")))
}

pub async fn upsert_plan(conn: &mut AsyncPgConnection, plan: &Plan) -> Result<(), Error> {
    tracking_db::prepared(
        "insert into plans (brand_id, id, name, integration_id, provider, terms, code_trigger, archived) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) \
         on conflict (brand_id, id) do update set name = excluded.name, \
           integration_id = excluded.integration_id, provider = excluded.provider, \
           terms = excluded.terms, code_trigger = excluded.code_trigger, archived = excluded.archived",
    )
    .bind::<BigInt, _>(plan.brand_id)
    .bind::<BigInt, _>(plan.id)
    .bind::<Text, _>(&plan.name)
    .bind::<BigInt, _>(plan.integration_id)
    .bind::<Text, _>(plan.provider.as_str_name())
    .bind::<Jsonb, _>(json(&plan.terms)?)
    .bind::<Text, _>(plan.trigger.as_str())
    .bind::<Bool, _>(plan.archived)
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns of a [`PlanRow`], of `plans` aliased `p`.
const PLAN_COLUMNS: &str = "p.brand_id, p.id, p.name, p.integration_id, p.provider, p.terms, p.code_trigger, p.archived, \
     p.links_key";

#[derive(QueryableByName)]
pub(crate) struct PlanRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Jsonb)]
    pub terms: serde_json::Value,
    #[diesel(sql_type = Text)]
    pub code_trigger: String,
    #[diesel(sql_type = Bool)]
    pub archived: bool,
    #[diesel(sql_type = Text)]
    pub links_key: String,
}

impl TryFrom<PlanRow> for Plan {
    type Error = Error;
    fn try_from(row: PlanRow) -> Result<Plan, Error> {
        Ok(Plan {
            brand_id: row.brand_id,
            id: row.id,
            name: row.name,
            integration_id: row.integration_id,
            provider: Provider::from_str_name(&row.provider)
                .ok_or_else(|| Error::Internal(format!("plan {}: bad provider", row.id)))?,
            terms: serde_json::from_value(row.terms)
                .map_err(|e| Error::Internal(format!("plan {}: bad terms: {e}", row.id)))?,
            trigger: Trigger::parse(&row.code_trigger)
                .ok_or_else(|| Error::Internal(format!("plan {}: bad trigger", row.id)))?,
            archived: row.archived,
            links_key: row.links_key,
        })
    }
}

pub async fn get_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
) -> Result<Option<Plan>, Error> {
    let rows: Vec<PlanRow> = tracking_db::prepared(format!(
        "select {PLAN_COLUMNS} from plans p where p.brand_id = $1 and p.id = $2"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .load(conn)
    .await?;
    rows.into_iter().next().map(Plan::try_from).transpose()
}

pub async fn upsert_campaign(
    conn: &mut AsyncPgConnection,
    campaign: &Campaign,
) -> Result<(), Error> {
    tracking_db::prepared(
        "insert into campaigns (brand_id, id, name, plan_id, archived) values ($1, $2, $3, $4, $5) \
         on conflict (brand_id, id) do update set name = excluded.name, \
           plan_id = excluded.plan_id, archived = excluded.archived",
    )
    .bind::<BigInt, _>(campaign.brand_id)
    .bind::<BigInt, _>(campaign.id)
    .bind::<Text, _>(&campaign.name)
    .bind::<Nullable<BigInt>, _>(campaign.plan_id)
    .bind::<Bool, _>(campaign.archived)
    .execute(conn)
    .await?;
    Ok(())
}

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
    #[diesel(sql_type = Bool)]
    archived: bool,
}

/// The campaigns linked to plan (brand, `plan_id`), by id.
pub async fn campaigns_of_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
) -> Result<Vec<i64>, Error> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let rows: Vec<Id> = tracking_db::prepared(
        "select id from campaigns where brand_id = $1 and plan_id = $2 order by id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(plan_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

pub async fn get_campaign(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
) -> Result<Option<Campaign>, Error> {
    let rows: Vec<CampaignRow> = tracking_db::prepared(
        // The key joined, not constants: for a brand the statistics had not seen, the planner
        // found campaigns_brand_plan as cheap as the primary key (tracking_db::stale_statistics).
        "select c.brand_id, c.id, c.name, c.plan_id, c.archived \
         from unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_id) \
         join campaigns c on c.brand_id = k.key_brand and c.id = k.key_id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|r| Campaign {
        brand_id: r.brand_id,
        id: r.id,
        name: r.name,
        plan_id: r.plan_id,
        archived: r.archived,
    }))
}

/// Stores roster entries, each key once, in one statement (in key order, so that two writers
/// lock rows in the same order).
/// Holds these `(brand, campaign)` rosters alone until the transaction ends (advisory locks, in
/// key order), for the projection applying removals from them or relinking them: codes being
/// written for them meanwhile (which hold them shared, `roster_open_for_plans` in the
/// migrations) commit first and are then seen, and codes written after see the removals and the
/// new plan ([`super::codes::reserve`]).
pub async fn hold_rosters(
    conn: &mut AsyncPgConnection,
    campaigns: &[(i64, i64)],
) -> Result<(), Error> {
    if campaigns.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "select pg_advisory_xact_lock(held.key) is null as n \
         from (select distinct roster_hold_key(h.b, h.c) as key \
               from unnest($1::bigint[], $2::bigint[]) as h(b, c) order by 1) held",
    )
    .bind::<Array<BigInt>, _>(campaigns.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(campaigns.iter().map(|k| k.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_roster(
    conn: &mut AsyncPgConnection,
    entries: &[((i64, i64, i64), &Profile, RosterStatus)],
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let profiles = entries
        .iter()
        .map(|(_, profile, _)| json(profile))
        .collect::<Result<Vec<_>, _>>()?;
    tracking_db::prepared(
        "insert into roster (brand_id, campaign_id, creator_id, profile, status) \
         select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::jsonb[], $5::text[]) \
         order by 1, 2, 3 \
         on conflict (brand_id, campaign_id, creator_id) do update set \
           profile = excluded.profile, status = excluded.status",
    )
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.0.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.0.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.0.2).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(profiles)
    .bind::<Array<Text>, _>(entries.iter().map(|e| e.2.as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records whether the brand disabled the creator's code in the campaign since they joined its
/// roster (see [`enqueue_missing`]): set by the brand's disable while they are on it, cleared by
/// their removal.
pub async fn set_code_disabled(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, i64),
    disabled: bool,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update roster set code_disabled = $4 \
         where brand_id = $1 and campaign_id = $2 and creator_id = $3 \
           and (not $4 or status <> 'removed')",
    )
    .bind::<BigInt, _>(key.0)
    .bind::<BigInt, _>(key.1)
    .bind::<BigInt, _>(key.2)
    .bind::<Bool, _>(disabled)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues every creator of the plan's active campaigns (or of one campaign) whose roster
/// status is in `statuses` and who has no code: none live, and none the brand disabled since
/// they joined the roster (it stays disabled). Returns how many were queued.
pub async fn enqueue_missing(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: Option<i64>,
    campaign_id: Option<i64>,
    statuses: &[RosterStatus],
) -> Result<usize, Error> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let queued = tracking_db::prepared(
        // The brand comes from an `unnest`, not a constant: with `r.brand_id = $1`, the planner
        // carried the constant into the codes lookup and, for a brand its statistics had not
        // seen, read the brand's codes and campaigns once per roster entry (51 s for a 30,000
        // roster; tests/stale_statistics.rs).
        "insert into mint_queue (brand_id, campaign_id, creator_id) \
         select r.brand_id, r.campaign_id, r.creator_id \
         from unnest(array[$1::bigint]) as b(key_brand) \
         join campaigns c on c.brand_id = b.key_brand \
         join roster r on r.brand_id = c.brand_id and r.campaign_id = c.id \
         where not c.archived and c.plan_id is not null \
           and ($2::bigint is null or c.plan_id = $2) \
           and ($3::bigint is null or c.id = $3) \
           and r.status = any($4) and not r.code_disabled \
           and not exists (select 1 from codes x where x.brand_id = r.brand_id \
             and x.campaign_id = r.campaign_id and x.creator_id = r.creator_id \
             and not x.disabled) \
         on conflict (brand_id, campaign_id, creator_id) do update \
           set enqueued_at = clock_timestamp(), claimed_until = null",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Nullable<BigInt>, _>(plan_id)
    .bind::<Nullable<BigInt>, _>(campaign_id)
    .bind::<Array<Text>, _>(statuses)
    .execute(conn)
    .await?;
    Ok(queued)
}

/// Takes off the queue the creators who are only added (not approved) of the plan's campaigns,
/// or of one campaign, for a plan switched to minting at approval or a campaign relinked to one:
/// those the queue still holds were queued for being added. Returns how many were taken off.
pub async fn dequeue_added(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: Option<i64>,
    campaign_id: Option<i64>,
) -> Result<usize, Error> {
    Ok(tracking_db::prepared(
        "delete from mint_queue q \
         using unnest(array[$1::bigint]) as b(key_brand), campaigns c, roster r \
         where c.brand_id = b.key_brand \
           and ($2::bigint is null or c.plan_id = $2) and ($3::bigint is null or c.id = $3) \
           and q.brand_id = c.brand_id and q.campaign_id = c.id \
           and r.brand_id = q.brand_id and r.campaign_id = q.campaign_id \
           and r.creator_id = q.creator_id and r.status = 'added'",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Nullable<BigInt>, _>(plan_id)
    .bind::<Nullable<BigInt>, _>(campaign_id)
    .execute(conn)
    .await?)
}

/// Queues creators, each key once, in one statement (in key order), but for those whose code
/// the brand disabled: no trigger mints them another (one with a failure of the brand's own
/// `MintCode` on record is queued: a profile fix retries it).
pub async fn enqueue(conn: &mut AsyncPgConnection, keys: &[(i64, i64, i64)]) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "insert into mint_queue (brand_id, campaign_id, creator_id) \
         select * from unnest($1::bigint[], $2::bigint[], $3::bigint[]) as k(b, c, cr) \
         where not exists (select 1 from roster r where r.brand_id = k.b \
             and r.campaign_id = k.c and r.creator_id = k.cr and r.code_disabled) \
           or exists (select 1 from mint_failures f where f.brand_id = k.b \
             and f.campaign_id = k.c and f.creator_id = k.cr and not f.by_trigger) \
         order by 1, 2, 3 \
         on conflict (brand_id, campaign_id, creator_id) do update \
           set enqueued_at = clock_timestamp(), claimed_until = null",
    )
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// What minting one creator needs, looked up for a whole batch in one query.
#[derive(QueryableByName, Debug)]
pub struct MintContext {
    #[diesel(sql_type = BigInt)]
    pub i: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub campaign_name: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub campaign_archived: Option<bool>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub plan_id: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub profile: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub roster_status: Option<String>,
    /// A failed mint is on record (to be cleared once a code exists).
    #[diesel(sql_type = Bool)]
    pub had_failure: bool,
}

/// For each `(brand, campaign, creator)`, in order (`i` is the 1-based position). Each row is
/// probed by its key (`lateral … limit 1`): a mint batch plans this once, maybe while the tables
/// are empty, and a join the planner chose then could hash whole tables later.
pub async fn contexts(
    mut conn: &AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<Vec<MintContext>, Error> {
    let brands: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let campaigns: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let creators: Vec<i64> = keys.iter().map(|k| k.2).collect();
    Ok(tracking_db::prepared(
        "select q.i, c.name as campaign_name, c.archived as campaign_archived, c.plan_id, \
                r.profile, r.status as roster_status, f.had is not null as had_failure \
         from unnest($1::bigint[], $2::bigint[], $3::bigint[]) with ordinality \
              as q(brand_id, campaign_id, creator_id, i) \
         left join lateral (select name, archived, plan_id from campaigns \
              where brand_id = q.brand_id and id = q.campaign_id limit 1) c on true \
         left join lateral (select profile, status from roster where brand_id = q.brand_id \
              and campaign_id = q.campaign_id and creator_id = q.creator_id limit 1) r on true \
         left join lateral (select true as had from mint_failures where brand_id = q.brand_id \
              and campaign_id = q.campaign_id and creator_id = q.creator_id limit 1) f on true \
         order by q.i",
    )
    .bind::<Array<BigInt>, _>(brands)
    .bind::<Array<BigInt>, _>(campaigns)
    .bind::<Array<BigInt>, _>(creators)
    .load(&mut conn)
    .await?)
}

/// The plans of the campaigns of these `(brand, campaign, creator)` keys (each once), read
/// beside [`contexts`] rather than after it. A campaign relinked in between leaves its new plan
/// to [`plans`].
pub async fn plans_of_campaigns(
    mut conn: &AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<Vec<Plan>, Error> {
    let rows: Vec<PlanRow> = tracking_db::prepared(format!(
        "select p.* \
         from (select distinct c.brand_id, c.plan_id \
               from (select distinct * from unnest($1::bigint[], $2::bigint[])) \
                 as q(brand_id, campaign_id) \
               cross join lateral (select brand_id, plan_id from campaigns \
                 where brand_id = q.brand_id and id = q.campaign_id limit 1) c) k \
         cross join lateral (select {PLAN_COLUMNS} from plans p \
           where p.brand_id = k.brand_id and p.id = k.plan_id limit 1) p"
    ))
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .load(&mut conn)
    .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

/// The plans of a batch, by (brand, id).
pub async fn plans(conn: &mut AsyncPgConnection, keys: &[(i64, i64)]) -> Result<Vec<Plan>, Error> {
    let brands: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let ids: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let rows: Vec<PlanRow> = tracking_db::prepared(format!(
        "select p.* from unnest($1::bigint[], $2::bigint[]) as q(brand_id, id) \
         cross join lateral (select {PLAN_COLUMNS} from plans p \
           where p.brand_id = q.brand_id and p.id = q.id limit 1) p"
    ))
    .bind::<Array<BigInt>, _>(brands)
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
    .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

/// Roster entries of a campaign that are not removed, by creator id, for previews.
#[derive(QueryableByName)]
pub struct RosterRow {
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Jsonb)]
    pub profile: serde_json::Value,
}

pub async fn roster_page(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<RosterRow>, Error> {
    Ok(tracking_db::prepared(
        "select creator_id, profile from roster where brand_id = $1 and campaign_id = $2 \
         and status <> 'removed' and creator_id > $3 order by creator_id limit $4",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(after.unwrap_or(0))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn roster_size(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
) -> Result<i64, Error> {
    let row: CountRow = tracking_db::prepared(
        "select count(*) as n from roster where brand_id = $1 and campaign_id = $2 and status <> 'removed'",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .get_result(conn)
    .await?;
    Ok(row.n)
}
