//! Idempotency of creating calls: a client `request_id` maps to the resource it created.

use diesel::sql_types::{BigInt, Bytea, Nullable, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use crate::{DbError, Migrations};

/// The `request_keys` table, applied into each service schema that takes request ids.
pub const MIGRATIONS: Migrations = Migrations {
    embedded: diesel_migrations::embed_migrations!("migrations"),
    source_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
};

/// A client's request id with a digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    pub id: String,
    fingerprint: [u8; 32],
}

impl RequestKey {
    /// `request` is the whole request as encoded on the wire (its request id included: the same
    /// for every retry). Encodings are deterministic (maps are kept in key order), so a retry
    /// of the same request gives the same digest.
    pub fn new(id: &str, request: &[u8]) -> Self {
        RequestKey {
            id: id.to_owned(),
            fingerprint: Sha256::digest(request).into(),
        }
    }
}

/// The outcome of claiming a request id inside a creating transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: create the resource, then call [`complete`].
    New,
    /// Seen before: the resource it created (return it, create nothing).
    Existing(Created),
}

/// The resource a request created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
    /// What the resource lives under when its id alone does not name it (a roster entry, named
    /// by its creator id, lives under its campaign).
    pub scope: Option<i64>,
}

#[derive(QueryableByName)]
struct ResourceRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    resource_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    scope_id: Option<i64>,
    #[diesel(sql_type = Nullable<Bytea>)]
    fingerprint: Option<Vec<u8>>,
}

/// Claims `key` for `rpc` in the caller's transaction. A concurrent claim of the same key waits
/// until this transaction ends. The same id sent with a different request is refused
/// ([`DbError::RequestIdReused`]).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    rpc: &str,
    key: &RequestKey,
) -> Result<Claim, DbError> {
    let inserted = crate::prepared(
        "insert into request_keys (brand_id, rpc, request_id, fingerprint) \
         values ($1, $2, $3, $4) \
         on conflict do nothing returning resource_id, scope_id, fingerprint",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Text, _>(rpc)
    .bind::<Text, _>(&key.id)
    .bind::<Bytea, _>(key.fingerprint.as_slice())
    .get_result::<ResourceRow>(conn)
    .await
    .optional()?;
    if inserted.is_some() {
        return Ok(Claim::New);
    }
    created(conn, brand_id, rpc, key)
        .await?
        .map(Claim::Existing)
        .ok_or_else(|| DbError::Other(format!("request key {rpc}/{} has no resource", key.id)))
}

/// The resource a request id created, if it is recorded: a call that must ask another service
/// before it creates anything looks here first, so that its retry answers what it created even
/// when that service could not answer now (the claim, in the creating transaction, still decides
/// between concurrent calls). The same id sent with a different request is refused.
pub async fn created(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    rpc: &str,
    key: &RequestKey,
) -> Result<Option<Created>, DbError> {
    let existing = crate::prepared(
        "select resource_id, scope_id, fingerprint from request_keys
         where brand_id = $1 and rpc = $2 and request_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Text, _>(rpc)
    .bind::<Text, _>(&key.id)
    .get_result::<ResourceRow>(conn)
    .await
    .optional()?;
    let Some(row) = existing else {
        return Ok(None);
    };
    // Keys recorded before fingerprints were kept have none: they answer as before.
    if row
        .fingerprint
        .is_some_and(|seen| seen.as_slice() != key.fingerprint.as_slice())
    {
        return Err(DbError::RequestIdReused {
            rpc: rpc.to_owned(),
        });
    }
    Ok(row.resource_id.map(|id| Created {
        id,
        scope: row.scope_id,
    }))
}

/// Records the resource a claimed request created, in the same transaction.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    rpc: &str,
    key: &RequestKey,
    created: Created,
) -> Result<(), DbError> {
    crate::prepared(
        "update request_keys set resource_id = $4, scope_id = $5
         where brand_id = $1 and rpc = $2 and request_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Text, _>(rpc)
    .bind::<Text, _>(&key.id)
    .bind::<BigInt, _>(created.id)
    .bind::<Nullable<BigInt>, _>(created.scope)
    .execute(conn)
    .await?;
    Ok(())
}
