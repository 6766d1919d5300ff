//! Roster entries.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Lock;
use crate::domain::roster::{Profile, RosterEntry, RosterStatus};
use crate::error::Error;

#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    creator_id: i64,
    #[diesel(sql_type = Jsonb)]
    profile: serde_json::Value,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    added_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    approved_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    removed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<EntryRow> for RosterEntry {
    type Error = Error;
    fn try_from(row: EntryRow) -> Result<RosterEntry, Error> {
        let bad = |what: &str| {
            Error::Internal(format!(
                "roster {}/{}: bad {what}",
                row.campaign_id, row.creator_id
            ))
        };
        Ok(RosterEntry {
            brand_id: row.brand_id,
            campaign_id: row.campaign_id,
            creator_id: row.creator_id,
            profile: serde_json::from_value(row.profile.clone()).map_err(|_| bad("profile"))?,
            status: RosterStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            added_at: row.added_at,
            approved_at: row.approved_at,
            removed_at: row.removed_at,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "r.brand_id, r.campaign_id, r.creator_id, r.profile, r.status, r.added_at, \
    r.approved_at, r.removed_at, r.updated_at";

fn profile_json(profile: &Profile) -> Result<serde_json::Value, Error> {
    serde_json::to_value(profile).map_err(|e| Error::Internal(format!("encoding profile: {e}")))
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_id: i64,
    lock: Lock,
) -> Result<Option<RosterEntry>, Error> {
    let sql = format!(
        "select {COLUMNS} from roster r \
         where r.brand_id = $1 and r.campaign_id = $2 and r.creator_id = $3{}",
        lock.sql()
    );
    let rows: Vec<EntryRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(campaign_id)
        .bind::<BigInt, _>(creator_id)
        .load(conn)
        .await?;
    rows.into_iter()
        .next()
        .map(RosterEntry::try_from)
        .transpose()
}

/// The entries of `creator_ids` on the campaign (those it has), locked for update in creator
/// order.
pub async fn get_many(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_ids: &[i64],
) -> Result<Vec<RosterEntry>, Error> {
    let mut sorted = creator_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    // One locked lookup per key, in key order: a join let the planner hash a mid-sized roster
    // whole for a batch of 500.
    let sql = format!(
        "select {COLUMNS} \
         from unnest($1::bigint[], $2::bigint[], $3::bigint[]) \
             as k(key_brand, key_campaign, key_creator) \
         cross join lateral (select * from roster x where x.brand_id = k.key_brand \
             and x.campaign_id = k.key_campaign and x.creator_id = k.key_creator for update) r \
         order by r.creator_id"
    );
    let rows: Vec<EntryRow> = tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(vec![brand_id; sorted.len()])
        .bind::<Array<BigInt>, _>(vec![campaign_id; sorted.len()])
        .bind::<Array<BigInt>, _>(sorted)
        .load(conn)
        .await?;
    rows.into_iter().map(RosterEntry::try_from).collect()
}

/// Adds creators, or restores removed ones with their new profile, in one statement (each
/// creator once; a repeat fails the statement). Rows are written in creator order, as
/// [`get_many`] locks them, so two batches that share creators wait for each other instead of
/// deadlocking. Returns the entries it wrote: a creator another call put on the roster since the
/// caller read it (not removed) is left as that call wrote it, and not returned.
pub async fn upsert_many(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    entries: &[(i64, &Profile, RosterStatus)],
) -> Result<Vec<RosterEntry>, Error> {
    let profiles = entries
        .iter()
        .map(|(_, profile, _)| profile_json(profile))
        .collect::<Result<Vec<_>, _>>()?;
    let sql = format!(
        "insert into roster as r (brand_id, campaign_id, creator_id, profile, status, approved_at) \
         select $1, $2, e.creator_id, e.profile, e.status, \
             case when e.status = 'approved' then now() end \
         from unnest($3::bigint[], $4::jsonb[], $5::text[]) as e(creator_id, profile, status) \
         order by e.creator_id \
         on conflict (brand_id, campaign_id, creator_id) do update set \
           profile = excluded.profile, status = excluded.status, added_at = now(), \
           approved_at = excluded.approved_at, removed_at = null, updated_at = now() \
         where r.status = 'removed' \
         returning {COLUMNS}"
    );
    let rows: Vec<EntryRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(campaign_id)
        .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.0).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(profiles)
        .bind::<Array<Text>, _>(entries.iter().map(|e| e.2.as_str()).collect::<Vec<_>>())
        .load(conn)
        .await?;
    rows.into_iter().map(RosterEntry::try_from).collect()
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_id: i64,
    status: RosterStatus,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update roster set status = $4, updated_at = now(), \
           approved_at = case when $4 = 'approved' then now() else approved_at end, \
           removed_at = case when $4 = 'removed' then now() else removed_at end \
         where brand_id = $1 and campaign_id = $2 and creator_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(creator_id)
    .bind::<Text, _>(status.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_profile(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_id: i64,
    profile: &Profile,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update roster set profile = $4, updated_at = now() \
         where brand_id = $1 and campaign_id = $2 and creator_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(creator_id)
    .bind::<Jsonb, _>(profile_json(profile)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// By creator id; `after` is the last creator id of the previous page.
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    status: Option<RosterStatus>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<RosterEntry>, Error> {
    let sql = format!(
        "select {COLUMNS} from roster r where r.brand_id = $1 and r.campaign_id = $2 \
         and ($3::text is null or r.status = $3) and r.creator_id > $4 \
         order by r.creator_id limit $5"
    );
    let rows: Vec<EntryRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(campaign_id)
        .bind::<Nullable<Text>, _>(status.map(RosterStatus::as_str))
        .bind::<BigInt, _>(after.unwrap_or(0))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    rows.into_iter().map(RosterEntry::try_from).collect()
}
