//! Failed mints, one row per creator and campaign, replaced by each new attempt.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::Failure;
use crate::error::Error;

pub async fn record(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, i64),
    failure: &Failure,
) -> Result<(), Error> {
    tracking_db::prepared(
        "insert into mint_failures (brand_id, campaign_id, creator_id, reason, fields, message) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (brand_id, campaign_id, creator_id) do update set reason = excluded.reason, \
           fields = excluded.fields, message = excluded.message, \
           attempts = mint_failures.attempts + 1, failed_at = now(), by_trigger = false",
    )
    .bind::<BigInt, _>(key.0)
    .bind::<BigInt, _>(key.1)
    .bind::<BigInt, _>(key.2)
    .bind::<Text, _>(failure.reason())
    .bind::<Array<Text>, _>(failure.fields())
    .bind::<Text, _>(failure.message())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the failures of `keys` as the trigger's: the mint queue's attempts failed (see the
/// column's migration).
pub async fn mark_by_trigger(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<(), Error> {
    for_keys(
        conn,
        "update mint_failures set by_trigger = true where (brand_id, campaign_id, creator_id) in \
           (select * from unnest($1::bigint[], $2::bigint[], $3::bigint[]))",
        keys,
    )
    .await
}

/// The keys among `keys` whose failure on record the brand asked for (not the trigger): a
/// failure stays the brand's when the queue retries it after a profile fix.
pub async fn brands_among(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<Vec<(i64, i64, i64)>, Error> {
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = BigInt)]
        brand_id: i64,
        #[diesel(sql_type = BigInt)]
        campaign_id: i64,
        #[diesel(sql_type = BigInt)]
        creator_id: i64,
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Key> = keyed(
        "select f.brand_id, f.campaign_id, f.creator_id \
         from unnest($1::bigint[], $2::bigint[], $3::bigint[]) as k(b, c, r) \
         join mint_failures f on f.brand_id = k.b and f.campaign_id = k.c \
           and f.creator_id = k.r \
         where not f.by_trigger",
        keys,
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|k| (k.brand_id, k.campaign_id, k.creator_id))
        .collect())
}

/// Forgets the failures of keys that now have a code. Planned at each execution (a join of the
/// keys to the table, run on a mint batch's connection, which plans kept statements once).
pub async fn clear(conn: &mut AsyncPgConnection, keys: &[(i64, i64, i64)]) -> Result<(), Error> {
    for_keys(
        conn,
        "delete from mint_failures where (brand_id, campaign_id, creator_id) in \
           (select * from unnest($1::bigint[], $2::bigint[], $3::bigint[]))",
        keys,
    )
    .await
}

/// Runs `sql` for `keys`, bound as `$1..$3` (brands, campaigns, creators); nothing for none.
async fn for_keys(
    conn: &mut AsyncPgConnection,
    sql: &'static str,
    keys: &[(i64, i64, i64)],
) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    keyed(sql, keys).execute(conn).await?;
    Ok(())
}

/// `sql` with `keys` bound as `$1..$3` (brands, campaigns, creators), planned at each execution:
/// a join of the keys to the table, whose right plan depends on the table's size.
fn keyed(sql: &'static str, keys: &[(i64, i64, i64)]) -> tracking_db::Prepared<'static> {
    tracking_db::prepared(sql)
        .planned_each_time()
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
}

#[derive(QueryableByName, Debug, Clone)]
pub struct FailureRow {
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Array<Text>)]
    pub fields: Vec<String>,
    #[diesel(sql_type = Text)]
    pub message: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub failed_at: DateTime<Utc>,
    /// A failed mint the plan's trigger asked for, not the brand.
    #[diesel(sql_type = Bool)]
    pub by_trigger: bool,
}

impl FailureRow {
    pub fn failure(&self) -> Failure {
        Failure::from_stored(&self.reason, self.fields.clone(), &self.message)
    }
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, i64),
) -> Result<Option<FailureRow>, Error> {
    let rows: Vec<FailureRow> = tracking_db::prepared(
        "select campaign_id, creator_id, reason, fields, message, attempts, failed_at, by_trigger \
         from mint_failures where brand_id = $1 and campaign_id = $2 and creator_id = $3",
    )
    .bind::<BigInt, _>(key.0)
    .bind::<BigInt, _>(key.1)
    .bind::<BigInt, _>(key.2)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// A campaign's failures by creator id.
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<FailureRow>, Error> {
    Ok(tracking_db::prepared(
        "select campaign_id, creator_id, reason, fields, message, attempts, failed_at, by_trigger \
         from mint_failures where brand_id = $1 and campaign_id = $2 and creator_id > $3 \
         order by creator_id limit $4",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(after.unwrap_or(0))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}
