//! The gateway's queries. Every query is scoped by brand.

pub mod amazon;
pub mod orders;
pub mod sandbox;
pub mod schema;
pub mod shared_discounts;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;
use tracking_db::request_keys::{self, Claim, Created, RequestKey};
use tracking_db::{Database, DbError};

use schema::integrations;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = integrations)]
pub struct IntegrationRow {
    pub brand_id: i64,
    pub id: i64,
    pub provider: String,
    pub name: String,
    pub shop_domain: String,
    pub base_url: String,
    pub credential_fields: Vec<String>,
    /// The credentials as a sealed JSON name-value map; only adapters open it.
    pub credentials_sealed: Vec<u8>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub sandbox_down: bool,
}

impl IntegrationRow {
    /// The provider; rows are only written from a validated [`Provider`], so an unknown name
    /// cannot occur and reads as unspecified.
    pub fn provider(&self) -> Provider {
        Provider::from_str_name(&self.provider).unwrap_or(Provider::Unspecified)
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = integrations)]
pub struct NewIntegrationRow<'a> {
    pub brand_id: i64,
    pub provider: &'a str,
    pub name: &'a str,
    pub shop_domain: &'a str,
    pub base_url: &'a str,
    pub credential_fields: Vec<String>,
    pub credentials_sealed: Vec<u8>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
}

/// What inserting an integration did.
pub enum Registered {
    Created(IntegrationRow),
    /// The request id was used before: the integration it created.
    Replayed(i64),
    /// Another integration of the brand has that name.
    NameTaken,
}

#[tracing::instrument(skip_all, fields(brand_id = row.brand_id))]
pub async fn insert_integration(
    db: &Database,
    row: NewIntegrationRow<'_>,
    request_id: Option<&RequestKey>,
) -> Result<Registered, DbError> {
    let mut conn = db.conn().await?;
    let brand_id = row.brand_id;
    let result = conn
        .transaction::<_, DbError, _>(async |conn| {
            if let Some(rid) = request_id
                && let Claim::Existing(replayed) =
                    request_keys::claim(conn, brand_id, "RegisterIntegration", rid).await?
            {
                return Ok(Registered::Replayed(replayed.id));
            }
            let created: IntegrationRow = diesel::insert_into(integrations::table)
                .values(&row)
                .returning(IntegrationRow::as_returning())
                .get_result(conn)
                .await?;
            if let Some(rid) = request_id {
                let key = Created {
                    id: created.id,
                    scope: None,
                };
                request_keys::complete(conn, brand_id, "RegisterIntegration", rid, key).await?;
            }
            Ok(Registered::Created(created))
        })
        .await;
    match result {
        Err(DbError::UniqueViolation { constraint }) if constraint == "integrations_brand_name" => {
            Ok(Registered::NameTaken)
        }
        other => other,
    }
}

pub async fn get_integration(
    db: &Database,
    brand_id: i64,
    id: i64,
) -> Result<Option<IntegrationRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(integrations::table
        .filter(integrations::brand_id.eq(brand_id))
        .filter(integrations::id.eq(id))
        .select(IntegrationRow::as_select())
        .first(&mut conn)
        .await
        .optional()?)
}

/// An integration by id alone, whatever its brand: webhook URLs name only the integration (the
/// delivery's signature then proves it comes from that brand's store).
pub async fn find_integration(db: &Database, id: i64) -> Result<Option<IntegrationRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(integrations::table
        .filter(integrations::id.eq(id))
        .select(IntegrationRow::as_select())
        .first(&mut conn)
        .await
        .optional()?)
}

/// Every brand's integrations of `providers` (the order poller's work list).
pub async fn integrations_of_providers(
    db: &Database,
    providers: &[&str],
) -> Result<Vec<IntegrationRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(integrations::table
        .filter(integrations::provider.eq_any(providers))
        .order(integrations::id.asc())
        .select(IntegrationRow::as_select())
        .load(&mut conn)
        .await?)
}

pub async fn list_integrations(
    db: &Database,
    brand_id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<IntegrationRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(integrations::table
        .filter(integrations::brand_id.eq(brand_id))
        .filter(integrations::id.gt(after.unwrap_or(0)))
        .order(integrations::id.asc())
        .limit(limit)
        .select(IntegrationRow::as_select())
        .load(&mut conn)
        .await?)
}

/// Switches a sandbox integration's simulated outage on or off; `None` when the brand has no
/// such integration.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = id))]
pub async fn set_sandbox_down(
    db: &Database,
    brand_id: i64,
    id: i64,
    down: bool,
) -> Result<Option<IntegrationRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(diesel::update(
        integrations::table
            .filter(integrations::brand_id.eq(brand_id))
            .filter(integrations::id.eq(id)),
    )
    .set(integrations::sandbox_down.eq(down))
    .returning(IntegrationRow::as_returning())
    .get_result(&mut conn)
    .await
    .optional()?)
}
