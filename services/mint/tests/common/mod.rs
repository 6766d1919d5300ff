//! What the mint's store tests share.

use diesel::sql_types::{Array, BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;
use tracking_db::{Conn, SchemaSpec, TestDb};

use mint_service::domain::{Code, CodeStatus};

/// A pending code `text` of brand 7 (campaign 1, plan 1, integration 1) for `creator_id`.
pub fn code(id: i64, creator_id: i64, text: &str) -> Code {
    let at = chrono::DateTime::from_timestamp_micros(1_764_979_200_000_000)
        .unwrap_or_else(|| panic!("a valid time"));
    Code {
        brand_id: 7,
        id,
        campaign_id: 1,
        creator_id,
        plan_id: 1,
        integration_id: 1,
        provider: Provider::Sandbox,
        code: Some(text.to_owned()),
        status: CodeStatus::Pending,
        store_error: String::new(),
        slug: format!("slug-{id}"),
        destination_url: String::new(),
        affiliate_url: String::new(),
        expires_at: None,
        history: Vec::new(),
        created_at: at,
        updated_at: at,
    }
}

/// The mint's schema, for [`TestDb::new`].
pub static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

/// A new database with the mint's schema (dropped with the first value), and a connection to it.
pub async fn database() -> (TestDb, Conn) {
    let test_db = TestDb::new(SCHEMAS).await;
    let conn = test_db
        .pool(mint_service::SCHEMA)
        .conn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (test_db, conn)
}

/// Puts the creators of `codes` on their campaigns' rosters (approved), as the projection does
/// when they are added: only a creator on the roster gets a code.
pub async fn enroll(conn: &mut AsyncPgConnection, codes: &[Code]) {
    let column = |f: fn(&Code) -> i64| codes.iter().map(f).collect::<Vec<i64>>();
    diesel::sql_query(
        "insert into roster (brand_id, campaign_id, creator_id, profile, status) \
         select brand_id, campaign_id, creator_id, '{}', 'approved' \
         from unnest($1::bigint[], $2::bigint[], $3::bigint[]) \
           as k(brand_id, campaign_id, creator_id) \
         on conflict do nothing",
    )
    .bind::<Array<BigInt>, _>(column(|c| c.brand_id))
    .bind::<Array<BigInt>, _>(column(|c| c.campaign_id))
    .bind::<Array<BigInt>, _>(column(|c| c.creator_id))
    .execute(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
