//! Amazon Ads storage: creators' attribution tags (one per creator and campaign), the imported
//! report rows (one per tag and day, replaced when Amazon revises the day, published on
//! `WatchOrders` in the same transaction) and the importer's lease per integration.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Date, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use tracking_api::common::v1::Money;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Database, DbError};
use tracking_events::NewEvent;

use crate::adapters::amazon::ReportRow;
use crate::domain::amazon::{TagIds, TagSubject};

/// A creator's stored tag.
#[derive(Debug, Clone, QueryableByName)]
pub struct TagRow {
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Text)]
    pub tag_campaign_id: String,
    #[diesel(sql_type = Text)]
    pub tag_ad_group_id: String,
    #[diesel(sql_type = Text)]
    pub tag_creative_id: String,
    #[diesel(sql_type = Text)]
    pub tag: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl TagRow {
    pub fn subject(&self) -> TagSubject {
        TagSubject {
            campaign_id: self.campaign_id,
            creator_id: self.creator_id,
        }
    }
}

/// The stored tags of these creators of the integration.
pub async fn tags(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    subjects: &[TagSubject],
) -> Result<Vec<TagRow>, DbError> {
    // Whole keys, the brand and integration repeated per creator (see
    // tracking_db::stale_statistics): next to constants for an integration the statistics had not
    // seen, the planner read all of its tags and probed each against the creators.
    Ok(tracking_db::prepared(
        "select campaign_id, creator_id, tag_campaign_id, tag_ad_group_id, tag_creative_id, tag,
             created_at
         from attribution_tags
         where (brand_id, integration_id, campaign_id, creator_id)
           in (select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]))",
    )
    .bind::<Array<BigInt>, _>(vec![brand_id; subjects.len()])
    .bind::<Array<BigInt>, _>(vec![integration_id; subjects.len()])
    .bind::<Array<BigInt>, _>(subjects.iter().map(|s| s.campaign_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(subjects.iter().map(|s| s.creator_id).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// Stores new tags; a creator who got a tag meanwhile (a concurrent call) keeps that one.
#[tracing::instrument(skip_all, fields(brand_id, integration_id, tags = tags.len()))]
pub async fn insert_tags(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    tags: &[(TagSubject, TagIds, String)],
) -> Result<(), DbError> {
    let text =
        |f: fn(&(TagSubject, TagIds, String)) -> &str| tags.iter().map(f).collect::<Vec<&str>>();
    tracking_db::prepared(
        "insert into attribution_tags (brand_id, integration_id, campaign_id, creator_id,
             tag_campaign_id, tag_ad_group_id, tag_creative_id, tag)
         select $1, $2, * from unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[],
             $7::text[], $8::text[])
         on conflict do nothing",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Array<BigInt>, _>(tags.iter().map(|t| t.0.campaign_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(tags.iter().map(|t| t.0.creator_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|t| &t.1.campaign_id))
    .bind::<Array<Text>, _>(text(|t| &t.1.ad_group_id))
    .bind::<Array<Text>, _>(text(|t| &t.1.creative_id))
    .bind::<Array<Text>, _>(text(|t| &t.2))
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored report row.
#[derive(Debug, Clone, QueryableByName)]
pub struct ReportRowRecord {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub tag_campaign_id: String,
    #[diesel(sql_type = Text)]
    pub tag_ad_group_id: String,
    #[diesel(sql_type = Text)]
    pub tag_creative_id: String,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub purchases: i64,
    #[diesel(sql_type = BigInt)]
    pub sales_minor: i64,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub campaign_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub creator_id: Option<i64>,
    #[diesel(sql_type = Integer)]
    pub revision: i32,
    #[diesel(sql_type = Timestamptz)]
    pub imported_at: DateTime<Utc>,
}

impl ReportRowRecord {
    pub fn to_proto(&self) -> pb::AmazonReportRow {
        pb::AmazonReportRow {
            id: self.id,
            integration_id: self.integration_id,
            tag_campaign_id: self.tag_campaign_id.clone(),
            tag_ad_group_id: self.tag_ad_group_id.clone(),
            tag_creative_id: self.tag_creative_id.clone(),
            day: self.day.format("%Y-%m-%d").to_string(),
            purchases: self.purchases,
            sales: Some(Money {
                amount_minor: self.sales_minor,
                currency: self.currency.clone(),
            }),
            campaign_id: self.campaign_id.unwrap_or_default(),
            creator_id: self.creator_id.unwrap_or_default(),
            revision: self.revision,
            imported_at: Some(prost_types::Timestamp {
                seconds: self.imported_at.timestamp(),
                nanos: self.imported_at.timestamp_subsec_nanos() as i32,
            }),
        }
    }
}

const ROW_COLUMNS: &str = "brand_id, integration_id, id, tag_campaign_id, tag_ad_group_id, \
    tag_creative_id, day, purchases, sales_minor, currency, campaign_id, creator_id, revision, \
    imported_at";

/// What storing an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub reported: usize,
    pub created: usize,
    pub revised: usize,
    pub unchanged: usize,
}

/// The database's clock: when an import's fetch begins, for [`store_report`].
pub async fn clock(conn: &mut AsyncPgConnection) -> Result<DateTime<Utc>, DbError> {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: DateTime<Utc>,
    }
    let row: Now = tracking_db::prepared("select now() as now")
        .get_result(conn)
        .await?;
    Ok(row.now)
}

/// Stores an import of the integration's report for `days`, fetched from Amazon from
/// `fetched_at` on (by the database's [`clock`]), in the caller's transaction: each reported row
/// is created, or replaces the stored figures of its tag and day when they changed (the next
/// revision); when `complete` (every row of the report was read), a stored row of those days
/// that Amazon no longer reports drops to zero (one it reported unreadably keeps its figures). A row
/// stored since `fetched_at` came from a later fetch (a backfill overtaken by the hourly import,
/// say) and is left as it is: older figures never replace newer ones. Every new or changed row
/// of a creator's tag is published on `WatchOrders`. Imports of one integration take turns (the
/// integration's row is locked), so their revisions stay in order.
#[tracing::instrument(skip_all, fields(brand_id, integration_id, rows = rows.len()))]
pub async fn store_report(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    days: (NaiveDate, NaiveDate),
    rows: &[ReportRow],
    complete: bool,
    fetched_at: DateTime<Utc>,
) -> Result<Stored, DbError> {
    tracking_db::prepared(
        "select 1 from integrations where brand_id = $1 and id = $2 for no key update",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .execute(conn)
    .await?;
    let rows = merged(rows);
    let text = |f: fn(&ReportRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    // Each row's tag is looked up by its whole key, the brand and integration repeated per row
    // (see tracking_db::stale_statistics): next to constants for an integration the statistics
    // had not seen, the planner read all of its tags for each import.
    let changed: Vec<ReportRowRecord> = tracking_db::prepared(format!(
        "insert into amazon_report_rows as r (brand_id, integration_id, tag_campaign_id,
             tag_ad_group_id, tag_creative_id, day, purchases, sales_minor, currency, campaign_id,
             creator_id)
         select i.b, i.n, i.c, i.a, i.x, i.day, i.purchases, i.sales, i.currency, t.campaign_id,
             t.creator_id
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::date[],
                     $7::bigint[], $8::bigint[], $9::text[])
             as i(b, n, c, a, x, day, purchases, sales, currency)
         left join attribution_tags t on t.brand_id = i.b and t.integration_id = i.n
             and t.tag_campaign_id = i.c and t.tag_ad_group_id = i.a and t.tag_creative_id = i.x
         order by i.c, i.a, i.x, i.day
         on conflict (brand_id, integration_id, tag_campaign_id, tag_ad_group_id, tag_creative_id,
                      day)
         do update set purchases = excluded.purchases, sales_minor = excluded.sales_minor,
             currency = excluded.currency, campaign_id = excluded.campaign_id,
             creator_id = excluded.creator_id, revision = r.revision + 1, imported_at = now()
         where (r.purchases, r.sales_minor, r.currency, r.campaign_id, r.creator_id)
             is distinct from (excluded.purchases, excluded.sales_minor, excluded.currency,
                               excluded.campaign_id, excluded.creator_id)
           and r.imported_at < $10
         returning {ROW_COLUMNS}"
    ))
    .bind::<Array<BigInt>, _>(vec![brand_id; rows.len()])
    .bind::<Array<BigInt>, _>(vec![integration_id; rows.len()])
    .bind::<Array<Text>, _>(text(|r| &r.campaign_id))
    .bind::<Array<Text>, _>(text(|r| &r.ad_group_id))
    .bind::<Array<Text>, _>(text(|r| &r.creative_id))
    .bind::<Array<Date>, _>(rows.iter().map(|r| r.date).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.purchases).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.sales_minor).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|r| &r.currency))
    .bind::<Timestamptz, _>(fetched_at)
    .load(conn)
    .await?;
    let dropped: Vec<ReportRowRecord> = tracking_db::prepared(format!(
        "update amazon_report_rows r set purchases = 0, sales_minor = 0,
             revision = r.revision + 1, imported_at = now()
         where $10 and r.brand_id = $1 and r.integration_id = $2 and r.day between $3 and $4
           and (r.purchases <> 0 or r.sales_minor <> 0) and r.imported_at < $9
           and not exists (select 1 from unnest($5::text[], $6::text[], $7::text[], $8::date[])
                   as i(c, a, x, day)
               where i.c = r.tag_campaign_id and i.a = r.tag_ad_group_id
                 and i.x = r.tag_creative_id and i.day = r.day)
         returning {ROW_COLUMNS}"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Date, _>(days.0)
    .bind::<Date, _>(days.1)
    .bind::<Array<Text>, _>(text(|r| &r.campaign_id))
    .bind::<Array<Text>, _>(text(|r| &r.ad_group_id))
    .bind::<Array<Text>, _>(text(|r| &r.creative_id))
    .bind::<Array<Date>, _>(rows.iter().map(|r| r.date).collect::<Vec<_>>())
    .bind::<Timestamptz, _>(fetched_at)
    .bind::<diesel::sql_types::Bool, _>(complete)
    .load(conn)
    .await?;
    let created = changed.iter().filter(|r| r.revision == 1).count();
    let revised = changed.len() - created;
    let received_at = prost_types::Timestamp::from(std::time::SystemTime::now());
    let events: Vec<NewEvent> = changed
        .iter()
        .chain(&dropped)
        .filter(|row| row.campaign_id.is_some() && row.creator_id.is_some())
        .map(|row| NewEvent {
            brand_id,
            kind: "amazon_report",
            payload: pb::OrderEvent {
                brand_id,
                source: pb::OrderSource::AmazonReport as i32,
                received_at: Some(received_at),
                report_row: Some(row.to_proto()),
                ..pb::OrderEvent::default()
            }
            .encode_to_vec(),
        })
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(Stored {
        reported: rows.len(),
        created,
        revised: revised + dropped.len(),
        unchanged: rows.len() - changed.len(),
    })
}

/// The rows with one row per tag and day (Amazon sends one; should it send more, they add up),
/// sorted so that concurrent imports take the unique index in the same order.
fn merged(rows: &[ReportRow]) -> Vec<ReportRow> {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut out: Vec<ReportRow> = Vec::with_capacity(sorted.len());
    for row in sorted {
        match out.last_mut() {
            Some(last) if key(last) == key(&row) => {
                last.purchases += row.purchases;
                last.sales_minor += row.sales_minor;
            }
            _ => out.push(row),
        }
    }
    out
}

fn key(row: &ReportRow) -> (&str, &str, &str, NaiveDate) {
    (
        &row.campaign_id,
        &row.ad_group_id,
        &row.creative_id,
        row.date,
    )
}

/// An integration's stored report rows by id, after `after`.
pub async fn list_report_rows(
    db: &Database,
    brand_id: i64,
    integration_id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<ReportRowRecord>, DbError> {
    let mut conn = db.conn().await?;
    // The brand is joined as a key, the integration stays a constant (see
    // tracking_db::stale_statistics): with a brand constant the statistics had not seen, the
    // primary key looked as cheap as amazon_report_rows_by_integration, and a page read the rows
    // of the brand's other integrations too.
    Ok(tracking_db::prepared(format!(
        "select {ROW_COLUMNS} from unnest(array[$1::bigint]) as k(key_brand)
         cross join lateral (select {ROW_COLUMNS} from amazon_report_rows
             where brand_id = k.key_brand and integration_id = $2 and id > $3
             order by id limit $4) r
         order by id"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<BigInt, _>(after.unwrap_or(0))
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}
