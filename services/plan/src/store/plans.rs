//! Plans.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;

use super::Lock;
use crate::domain::plan::{CodeTrigger, Plan, Terms};
use crate::error::Error;

#[derive(QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    integration_id: i64,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Jsonb)]
    terms: serde_json::Value,
    #[diesel(sql_type = Text)]
    code_trigger: String,
    #[diesel(sql_type = Bool)]
    report_visible: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    archived_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    locked: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
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
            code_trigger: CodeTrigger::parse(&row.code_trigger)
                .ok_or_else(|| Error::Internal(format!("plan {}: bad trigger", row.id)))?,
            report_visible: row.report_visible,
            archived_at: row.archived_at,
            locked: row.locked,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const SELECT: &str = "select p.brand_id, p.id, p.name, p.integration_id, p.provider, p.terms, \
    p.code_trigger, p.report_visible, p.archived_at, p.created_at, p.updated_at, \
    exists(select 1 from campaigns c where c.brand_id = p.brand_id and c.plan_id = p.id \
           and c.outreach_started_at is not null) as locked \
    from plans p";

fn terms_json(terms: &Terms) -> Result<serde_json::Value, Error> {
    serde_json::to_value(terms).map_err(|e| Error::Internal(format!("encoding terms: {e}")))
}

/// A plan to insert (validated).
pub struct NewPlan<'a> {
    pub brand_id: i64,
    pub name: &'a str,
    pub integration_id: i64,
    pub provider: Provider,
    pub terms: &'a Terms,
    pub code_trigger: CodeTrigger,
    pub report_visible: bool,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

pub async fn insert(conn: &mut AsyncPgConnection, plan: &NewPlan<'_>) -> Result<i64, Error> {
    let row: IdRow = tracking_db::prepared(
        "insert into plans (brand_id, name, integration_id, provider, terms, code_trigger, report_visible) \
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind::<BigInt, _>(plan.brand_id)
    .bind::<Text, _>(plan.name)
    .bind::<BigInt, _>(plan.integration_id)
    .bind::<Text, _>(plan.provider.as_str_name())
    .bind::<Jsonb, _>(terms_json(plan.terms)?)
    .bind::<Text, _>(plan.code_trigger.as_str())
    .bind::<Bool, _>(plan.report_visible)
    .get_result(conn)
    .await?;
    Ok(row.id)
}

/// The plan; with a `lock`, the row is locked first and read after, in a statement of its own.
/// Its `locked` flag is read from the campaigns: a statement that waited for the row lock of a
/// `StartOutreach` would still read them as they were before it (its snapshot predates the
/// wait, and the plan row itself did not change), and let an edit through the outreach lock.
pub async fn get(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    lock: Lock,
) -> Result<Option<Plan>, Error> {
    if lock != Lock::None {
        let sql = format!(
            "select 1 as n from plans where brand_id = $1 and id = $2{}",
            lock.sql()
        );
        tracking_db::prepared(sql)
            .bind::<BigInt, _>(brand_id)
            .bind::<BigInt, _>(id)
            .execute(conn)
            .await?;
    }
    let sql = format!("{SELECT} where p.brand_id = $1 and p.id = $2");
    let rows: Vec<PlanRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(id)
        .load(conn)
        .await?;
    rows.into_iter().next().map(Plan::try_from).transpose()
}

/// Newest first; `before` is the last id of the previous page.
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    include_archived: bool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Plan>, Error> {
    let sql = format!(
        "{SELECT} where p.brand_id = $1 and ($2 or p.archived_at is null) \
         and ($3::bigint is null or p.id < $3) order by p.id desc limit $4"
    );
    let rows: Vec<PlanRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<Bool, _>(include_archived)
        .bind::<Nullable<BigInt>, _>(before)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

pub async fn update_terms(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    name: &str,
    terms: &Terms,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update plans set name = $3, terms = $4, updated_at = now() where brand_id = $1 and id = $2",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(name)
    .bind::<Jsonb, _>(terms_json(terms)?)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_settings(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    code_trigger: CodeTrigger,
    report_visible: bool,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update plans set code_trigger = $3, report_visible = $4, updated_at = now() \
         where brand_id = $1 and id = $2",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(code_trigger.as_str())
    .bind::<Bool, _>(report_visible)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn archive(conn: &mut AsyncPgConnection, brand_id: i64, id: i64) -> Result<(), Error> {
    tracking_db::prepared(
        "update plans set archived_at = now(), updated_at = now() \
         where brand_id = $1 and id = $2 and archived_at is null",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}
