//! The minting queue filled by the plan stream (triggers, backfills, profile fixes).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Error;

/// A claimed queue entry: the creator and when it was queued.
#[derive(QueryableByName, Clone, Copy, Debug)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub enqueued_at: DateTime<Utc>,
}

/// Claims the oldest unclaimed entries for `claim_secs` (a worker that dies lets them go).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    limit: i64,
    claim_secs: i64,
) -> Result<Vec<Claimed>, Error> {
    Ok(tracking_db::prepared(
        "update mint_queue q set claimed_until = now() + make_interval(secs => $2) \
         from (select brand_id, campaign_id, creator_id from mint_queue \
               where claimed_until is null or claimed_until < now() \
               order by enqueued_at limit $1 for update skip locked) due \
         where q.brand_id = due.brand_id and q.campaign_id = due.campaign_id \
           and q.creator_id = due.creator_id \
         returning q.brand_id, q.campaign_id, q.creator_id, q.enqueued_at",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(claim_secs)
    .load(conn)
    .await?)
}

/// Those of `entries` whose creator's code the brand disabled (`roster.code_disabled`): no
/// trigger mints them another code, whenever they were queued. A creator with a failure of the
/// brand's own `MintCode` on record is not among them: a profile fix retries it.
pub async fn disabled_among(
    conn: &mut AsyncPgConnection,
    entries: &[Claimed],
) -> Result<Vec<Claimed>, Error> {
    #[derive(QueryableByName)]
    struct Position {
        #[diesel(sql_type = BigInt)]
        i: i64,
    }
    let rows: Vec<Position> = tracking_db::prepared(
        "select k.i from unnest($1::bigint[], $2::bigint[], $3::bigint[]) with ordinality \
           as k(brand_id, campaign_id, creator_id, i) \
         where exists (select 1 from roster r where r.brand_id = k.brand_id \
           and r.campaign_id = k.campaign_id and r.creator_id = k.creator_id \
           and r.code_disabled) \
           and not exists (select 1 from mint_failures f where f.brand_id = k.brand_id \
             and f.campaign_id = k.campaign_id and f.creator_id = k.creator_id \
             and not f.by_trigger)",
    )
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.campaign_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.creator_id).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| entries.get(usize::try_from(row.i - 1).ok()?).copied())
        .collect())
}

/// Takes the creator off the queue, claimed or not (a worker minting them now finds its entry
/// gone when it settles).
pub async fn forget(conn: &mut AsyncPgConnection, key: (i64, i64, i64)) -> Result<(), Error> {
    tracking_db::prepared(
        "delete from mint_queue where brand_id = $1 and campaign_id = $2 and creator_id = $3",
    )
    .bind::<BigInt, _>(key.0)
    .bind::<BigInt, _>(key.1)
    .bind::<BigInt, _>(key.2)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the creator is in the queue (waiting, or claimed by a worker minting it now).
pub async fn queued(conn: &mut AsyncPgConnection, key: (i64, i64, i64)) -> Result<bool, Error> {
    #[derive(QueryableByName)]
    struct Queued {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        queued: bool,
    }
    let row: Queued = tracking_db::prepared(
        "select exists (select 1 from mint_queue \
           where brand_id = $1 and campaign_id = $2 and creator_id = $3) as queued",
    )
    .bind::<BigInt, _>(key.0)
    .bind::<BigInt, _>(key.1)
    .bind::<BigInt, _>(key.2)
    .get_result(conn)
    .await?;
    Ok(row.queued)
}

/// Removes settled entries, unless they were queued again after being claimed.
pub async fn settle(conn: &mut AsyncPgConnection, entries: &[Claimed]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "delete from mint_queue q using unnest($1::bigint[], $2::bigint[], $3::bigint[], \
           $4::timestamptz[]) as s(brand_id, campaign_id, creator_id, enqueued_at) \
         where q.brand_id = s.brand_id and q.campaign_id = s.campaign_id \
           and q.creator_id = s.creator_id and q.enqueued_at = s.enqueued_at",
    )
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.campaign_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.creator_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(entries.iter().map(|e| e.enqueued_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Lets entries be taken again after `secs` (transient failures back off).
pub async fn release(
    conn: &mut AsyncPgConnection,
    entries: &[Claimed],
    secs: i64,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "update mint_queue q set claimed_until = now() + make_interval(secs => $5) \
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
           as s(brand_id, campaign_id, creator_id, enqueued_at) \
         where q.brand_id = s.brand_id and q.campaign_id = s.campaign_id \
           and q.creator_id = s.creator_id and q.enqueued_at = s.enqueued_at",
    )
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.campaign_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.creator_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(entries.iter().map(|e| e.enqueued_at).collect::<Vec<_>>())
    .bind::<BigInt, _>(secs)
    .execute(conn)
    .await?;
    Ok(())
}
