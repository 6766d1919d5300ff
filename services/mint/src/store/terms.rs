//! Codes whose plan's discount terms changed after they were minted (`terms_updates`): the
//! pusher updates each discount at its store in place, as the store disables are made, held
//! while the store is called outside any transaction.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Error;

/// Queues every code of `plan_id` the store has or will have (a text, not disabled), in the
/// campaigns that use the plan now, for an update of its discount's terms; a code queued already
/// is due again at once. How many were queued.
pub async fn enqueue_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
) -> Result<usize, Error> {
    Ok(tracking_db::prepared(
        "insert into terms_updates (brand_id, code_id) \
         select brand_id, id from codes \
         where brand_id = $1 and plan_id = $2 and not disabled and code is not null \
           and campaign_id in (select id from campaigns where brand_id = $1 and plan_id = $2) \
         on conflict (brand_id, code_id) do update \
           set next_at = now(), attempts = 0, last_error = null",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(plan_id)
    .execute(conn)
    .await?)
}

/// A code to update at its store, as a round took it: `held_until` marks the round's hold, so
/// that what it records applies only if the code was not queued again meanwhile.
#[derive(QueryableByName, Debug, Clone, Copy)]
pub struct TermsUpdate {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub held_until: DateTime<Utc>,
}

/// Takes the oldest due updates (skipping those another round has locked) and holds them for
/// `held_secs`, so that the store is called after this commits.
pub async fn take(
    conn: &mut AsyncPgConnection,
    limit: i64,
    held_secs: i64,
) -> Result<Vec<TermsUpdate>, Error> {
    Ok(tracking_db::prepared(
        "update terms_updates set next_at = now() + make_interval(secs => $2::bigint) \
         where ctid = any(array(select ctid from terms_updates where next_at <= now() \
           order by next_at limit $1 for update skip locked)) \
         returning brand_id, code_id, next_at as held_until",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(held_secs)
    .load(conn)
    .await?)
}

/// Done (the store has the plan's terms, or the code is gone): forgotten, unless it was queued
/// again since it was taken.
pub async fn done(conn: &mut AsyncPgConnection, item: &TermsUpdate) -> Result<(), Error> {
    tracking_db::prepared(
        "delete from terms_updates where brand_id = $1 and code_id = $2 and next_at = $3",
    )
    .bind::<BigInt, _>(item.brand_id)
    .bind::<BigInt, _>(item.code_id)
    .bind::<Timestamptz, _>(item.held_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Not done yet: tried again later (with backoff, from 2 s up to an hour), unless it was queued
/// again since it was taken.
pub async fn failed(
    conn: &mut AsyncPgConnection,
    item: &TermsUpdate,
    error: &str,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update terms_updates set attempts = attempts + 1, last_error = $3, \
           next_at = now() + make_interval(secs => least(power(2, least(attempts + 1, 12)), 3600)) \
         where brand_id = $1 and code_id = $2 and next_at = $4",
    )
    .bind::<BigInt, _>(item.brand_id)
    .bind::<BigInt, _>(item.code_id)
    .bind::<Text, _>(error)
    .bind::<Timestamptz, _>(item.held_until)
    .execute(conn)
    .await?;
    Ok(())
}
