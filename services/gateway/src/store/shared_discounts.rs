//! Shopify's shared discounts as every gateway process sees them (`shopify_shared_discounts`),
//! and the lock a process holds on a group while it finds or makes the group's discount.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracking_db::{Database, DbError};

/// A group of an integration's codes that share one discount.
#[derive(Clone, Copy, Debug)]
pub struct Group<'k> {
    pub brand_id: i64,
    pub integration_id: i64,
    pub key: &'k str,
}

/// A group's recorded discount and how long ago it was found or made.
#[derive(Debug)]
pub struct Recorded {
    pub store_discount_id: String,
    pub age: Duration,
}

/// The group's discount, when one was recorded less than `within` ago.
#[tracing::instrument(skip_all, fields(brand_id = group.brand_id, integration_id = group.integration_id))]
pub async fn recorded(
    db: &Database,
    group: Group<'_>,
    within: Duration,
) -> Result<Option<Recorded>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        store_discount_id: String,
        #[diesel(sql_type = Double)]
        age_secs: f64,
    }
    let mut conn = db.conn().await?;
    let row: Option<Row> = tracking_db::prepared(
        "select store_discount_id, greatest(extract(epoch from now() - found_at), 0)::float8 \
           as age_secs \
         from shopify_shared_discounts \
         where brand_id = $1 and integration_id = $2 and group_key = $3 \
           and found_at > now() - make_interval(secs => $4)",
    )
    .bind::<BigInt, _>(group.brand_id)
    .bind::<BigInt, _>(group.integration_id)
    .bind::<Text, _>(group.key)
    .bind::<Double, _>(within.as_secs_f64())
    .get_results(&mut conn)
    .await?
    .pop();
    Ok(row.map(|row| Recorded {
        store_discount_id: row.store_discount_id,
        age: Duration::from_secs_f64(row.age_secs),
    }))
}

/// Records `store_discount_id` as the group's discount, found or made now.
#[tracing::instrument(skip_all, fields(brand_id = group.brand_id, integration_id = group.integration_id))]
pub async fn record(
    db: &Database,
    group: Group<'_>,
    store_discount_id: &str,
) -> Result<(), DbError> {
    let mut conn = db.conn().await?;
    tracking_db::prepared(
        "insert into shopify_shared_discounts \
           (brand_id, integration_id, group_key, store_discount_id, found_at) \
         values ($1, $2, $3, $4, now()) \
         on conflict (brand_id, integration_id, group_key) do update \
           set store_discount_id = excluded.store_discount_id, found_at = excluded.found_at",
    )
    .bind::<BigInt, _>(group.brand_id)
    .bind::<BigInt, _>(group.integration_id)
    .bind::<Text, _>(group.key)
    .bind::<Text, _>(store_discount_id)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// The lock of one group, held by one gateway process at a time while it finds or makes the
/// group's discount: a session advisory lock on a connection of its own, so that no transaction
/// stays open through the store's calls, and a process that dies (or a holder dropped mid-call)
/// lets it go with its connection.
pub struct GroupLock {
    conn: AsyncPgConnection,
    /// Its place among the [`MAX_GROUP_LOCKS`], given back with the lock.
    _slot: SemaphorePermit<'static>,
}

/// The most group locks, each a connection of its own, a process holds at once: a push round
/// may carry codes of many plans' groups, and opening a connection for each at once could take
/// PostgreSQL's last ones from every other service.
pub const MAX_GROUP_LOCKS: usize = 8;

static GROUP_LOCKS: Semaphore = Semaphore::const_new(MAX_GROUP_LOCKS);

/// Waits for the group's lock. Its id is a hash of the group, with the schema's name (a collision
/// only makes two groups wait for each other).
#[tracing::instrument(skip_all, fields(brand_id = group.brand_id, integration_id = group.integration_id))]
pub async fn lock_group(db: &Database, group: Group<'_>) -> Result<GroupLock, DbError> {
    let permit = GROUP_LOCKS
        .acquire()
        .await
        .map_err(|_| DbError::Unavailable("group locks closed".to_owned()))?;
    let mut conn = db.dedicated().await?;
    tracking_db::prepared(
        "select pg_advisory_lock(hashtextextended( \
           current_schema() || '.shopify-shared.' || $1 || '.' || $2 || '.' || $3, 0))",
    )
    .bind::<BigInt, _>(group.brand_id)
    .bind::<BigInt, _>(group.integration_id)
    .bind::<Text, _>(group.key)
    .execute(&mut conn)
    .await?;
    Ok(GroupLock {
        conn,
        _slot: permit,
    })
}

impl GroupLock {
    /// Lets the group's lock go now (dropping the lock lets it go when its connection closes).
    pub async fn release(mut self) -> Result<(), DbError> {
        tracking_db::prepared("select pg_advisory_unlock_all()")
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tracking_db::{SchemaSpec, TestDb};

    use super::*;

    const SCHEMAS: &[SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];

    #[tokio::test]
    async fn group_locks_hold_at_most_a_few_connections_at_once() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let keys: Vec<String> = (0..=MAX_GROUP_LOCKS)
            .map(|n| format!("group {n}"))
            .collect();
        fn group(key: &str) -> Group<'_> {
            Group {
                brand_id: 1,
                integration_id: 2,
                key,
            }
        }
        let mut held = Vec::new();
        for key in &keys[..MAX_GROUP_LOCKS] {
            held.push(
                lock_group(&db, group(key))
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        // One more group waits for a connection of the others to go, not for its own lock.
        let waits = tokio::time::timeout(
            Duration::from_millis(300),
            lock_group(&db, group(&keys[MAX_GROUP_LOCKS])),
        )
        .await;
        assert!(waits.is_err(), "a lock beyond the limit was taken at once");
        if let Some(first) = held.pop() {
            first.release().await.unwrap_or_else(|e| panic!("{e}"));
        }
        let taken = tokio::time::timeout(
            Duration::from_secs(5),
            lock_group(&db, group(&keys[MAX_GROUP_LOCKS])),
        )
        .await;
        assert!(matches!(taken, Ok(Ok(_))), "taken once another went");
    }
}
