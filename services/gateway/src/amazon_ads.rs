//! Amazon Ads: creators' attribution tags (made once through Amazon Attribution, then answered
//! from the database) and the report importer. Every interval, each Amazon integration's recent
//! days are imported again (Amazon revises them), under a lease per integration so that one
//! replica imports it; `ImportAmazonReport` runs the same import for any range (backfills).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use diesel_async::AsyncConnection;
use tokio_util::sync::CancellationToken;
use tracking_api::common::v1::Provider;
use tracking_db::{Database, DbError};

use crate::adapters::amazon::AmazonAttribution;
use crate::domain::amazon::{TagIds, TagSubject, next_import};
use crate::error::Error;
use crate::rounds::{self, Job, Rounds};
use crate::store::IntegrationRow;
use crate::store::amazon::{self as store, Stored, TagRow};

/// Creators' tags and report imports of Amazon Ads integrations.
#[derive(Clone, Debug)]
pub struct AmazonAds {
    db: Database,
    client: AmazonAttribution,
}

impl AmazonAds {
    pub fn new(db: Database, client: AmazonAttribution) -> Self {
        Self { db, client }
    }

    /// FAILED_PRECONDITION unless the integration is Amazon Ads.
    fn check(integration: &IntegrationRow) -> Result<(), Error> {
        match integration.provider() {
            Provider::AmazonAds => Ok(()),
            other => Err(Error::FailedPrecondition(format!(
                "{} has no Amazon Attribution tags or reports",
                other.as_str_name()
            ))),
        }
    }

    /// The tags of `subjects` (validated), in order: those stored, and the others made now
    /// through Amazon Attribution and stored (a concurrent call's tag wins, both answer it).
    #[tracing::instrument(skip_all, fields(integration_id = integration.id, tags = subjects.len()))]
    pub async fn tags(
        &self,
        integration: &IntegrationRow,
        subjects: &[TagSubject],
    ) -> Result<Vec<TagRow>, Error> {
        Self::check(integration)?;
        let (brand_id, integration_id) = (integration.brand_id, integration.id);
        let mut conn = self.db.conn().await?;
        let mut stored =
            by_subject(store::tags(&mut conn, brand_id, integration_id, subjects).await?);
        let mut missing: Vec<TagSubject> = subjects
            .iter()
            .copied()
            .filter(|s| !stored.contains_key(s))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            // No connection is held while Amazon answers.
            drop(conn);
            let ids: Vec<TagIds> = missing.iter().copied().map(TagIds::of_creator).collect();
            let tags = self.client.creator_tags(integration, &ids).await?;
            let new: Vec<(TagSubject, TagIds, String)> = missing
                .iter()
                .copied()
                .zip(ids)
                .zip(tags)
                .map(|((subject, ids), tag)| (subject, ids, tag))
                .collect();
            let mut conn = self.db.conn().await?;
            store::insert_tags(&mut conn, brand_id, integration_id, &new).await?;
            stored.extend(by_subject(
                store::tags(&mut conn, brand_id, integration_id, &missing).await?,
            ));
            tracing::info!(
                brand_id,
                integration_id,
                created = new.len(),
                "attribution tags made"
            );
        }
        subjects
            .iter()
            .map(|subject| {
                stored.get(subject).cloned().ok_or_else(|| {
                    Error::Db(DbError::Other(format!(
                        "no tag stored for creator {} of campaign {}",
                        subject.creator_id, subject.campaign_id
                    )))
                })
            })
            .collect()
    }

    /// Imports the integration's report for `days` (both inclusive) and stores it.
    #[tracing::instrument(skip_all, fields(integration_id = integration.id))]
    pub async fn import(
        &self,
        integration: &IntegrationRow,
        days: (NaiveDate, NaiveDate),
    ) -> Result<Stored, Error> {
        Self::check(integration)?;
        // Rows stored after this moment come from a later fetch, which this one must not undo.
        let fetched_at = store::clock(&mut *self.db.conn().await?).await?;
        let (rows, unreadable) = self.client.performance(integration, days.0, days.1).await?;
        let mut conn = self.db.conn().await?;
        let stored = conn
            .transaction::<_, DbError, _>(async |conn| {
                let (brand_id, id) = (integration.brand_id, integration.id);
                store::store_report(conn, brand_id, id, days, &rows, unreadable == 0, fetched_at)
                    .await
            })
            .await?;
        tracing::info!(
            brand_id = integration.brand_id,
            integration_id = integration.id,
            from = %days.0,
            to = %days.1,
            reported = stored.reported,
            created = stored.created,
            revised = stored.revised,
            "amazon report imported"
        );
        Ok(stored)
    }
}

fn by_subject(rows: Vec<TagRow>) -> HashMap<TagSubject, TagRow> {
    rows.into_iter().map(|row| (row.subject(), row)).collect()
}

/// Importing Amazon Attribution's reports: its progress is the last day imported.
pub const JOB: Job = Job {
    name: "amazon_report",
    providers: &[Provider::AmazonAds],
};

/// Imports every Amazon integration's recent days every `every`, until `shutdown`.
pub async fn run(ads: AmazonAds, every: Duration, shutdown: CancellationToken) {
    rounds::run(&ads.db, JOB, every, shutdown, |rounds| {
        let ads = &ads;
        async move { import_all(ads, every, &rounds).await }
    })
    .await;
}

/// One round: every Amazon integration whose lease is free and that no other round of `rounds`
/// has taken; how many were imported.
pub async fn import_all(
    ads: &AmazonAds,
    every: Duration,
    rounds: &std::sync::Arc<Rounds>,
) -> Result<usize, DbError> {
    rounds::round(
        &ads.db,
        JOB,
        every,
        rounds,
        |integration, through: Option<NaiveDate>| async move {
            let days = next_import(Utc::now().date_naive(), through);
            ads.import(&integration, days).await?;
            Ok::<_, Error>(days.1)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prost::Message;
    use serde_json::{Value, json};
    use tracking_api::gateway::v1::{OrderEvent, OrderSource};
    use tracking_db::{PoolOptions, SchemaSpec, TestDb};
    use tracking_events::EventLog;

    use super::*;
    use crate::adapters::http::StoreHttp;
    use crate::adapters::mock::{self, MockStore};
    use crate::store::{NewIntegrationRow, Registered};

    const SCHEMAS: &[SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];

    const TEMPLATE: &str = "?maas=maas_adg_api_123456789_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid={insertCampaignId}&aa_adgroupid={insertAdGroupId}&aa_creativeid={insertAdId}";

    /// Amazon Attribution as documented: Login with Amazon, the profile, the publisher's
    /// non-macro template, and the PERFORMANCE report (`report` holds its rows; one page).
    async fn amazon(report: Arc<Mutex<Value>>) -> MockStore {
        MockStore::start(move |request| match request.route().as_str() {
            "POST /auth/o2/token" => mock::Reply::json(
                200,
                json!({ "access_token": "Atza|access", "refresh_token": "Atzr|refresh", "token_type": "bearer", "expires_in": 3600 }),
            ),
            "GET /v2/profiles/3456" => mock::Reply::json(
                200,
                json!({ "profileId": 3456, "countryCode": "US", "currencyCode": "USD", "timezone": "America/Los_Angeles" }),
            ),
            "GET /attribution/tags/nonMacroTemplateTag" => mock::Reply::json(
                200,
                json!({ "advertiserAttributionTagMap": { "987": { "pub-1": TEMPLATE } } }),
            ),
            "POST /attribution/report" => {
                let reports = report.lock().map(|r| r.clone()).unwrap_or_default();
                mock::Reply::json(
                    200,
                    json!({ "reports": reports, "cursorId": "", "size": reports.as_array().map_or(0, Vec::len) }),
                )
            }
            _ => mock::Reply::json(404, json!({ "code": "404", "details": "Not Found" })),
        })
        .await
    }

    struct Setup {
        _db: TestDb,
        db: Database,
        ads: AmazonAds,
        integration: IntegrationRow,
    }

    async fn setup(store: &MockStore) -> Setup {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let sealer = mock::sealer();
        let credentials = json!({
            "client_id": "amzn1.application-oa2-client.abc", "client_secret": "secret",
            "refresh_token": "Atzr|refresh", "profile_id": "3456", "advertiser_id": "987",
            "publisher_id": "pub-1",
        });
        let row = NewIntegrationRow {
            brand_id: 1,
            provider: Provider::AmazonAds.as_str_name(),
            name: "Amazon",
            shop_domain: "",
            base_url: &store.origin,
            credential_fields: Vec::new(),
            credentials_sealed: sealer
                .seal(1, credentials.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{e}")),
            webhook_secret_sealed: None,
        };
        let Ok(Registered::Created(integration)) =
            crate::store::insert_integration(&db, row, None).await
        else {
            panic!("integration not stored")
        };
        let http = StoreHttp::new(mock::fast_http(), sealer).unwrap_or_else(|e| panic!("{e}"));
        Setup {
            ads: AmazonAds::new(db.clone(), AmazonAttribution::new(http)),
            db,
            _db: test_db,
            integration,
        }
    }

    fn subject(campaign_id: i64, creator_id: i64) -> TagSubject {
        TagSubject {
            campaign_id,
            creator_id,
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, d).unwrap_or_default()
    }

    /// A report entry of Amazon's PERFORMANCE report grouped by creative.
    fn entry(date: &str, creative: &str, purchases: i64, sales: f64) -> Value {
        json!({ "date": date, "campaignId": "campaign-7", "adGroupId": "creator-42",
            "creativeId": creative, "publisher": "Influencers", "advertiserName": "Brand",
            "attributedPurchases14d": purchases, "attributedSales14d": sales })
    }

    /// The report rows published on WatchOrders so far.
    async fn published(db: &Database) -> Vec<tracking_api::gateway::v1::AmazonReportRow> {
        let log = EventLog::start(db.clone(), CancellationToken::new());
        let events = log.read(0, None, 100).await.unwrap_or_default();
        events
            .iter()
            .filter_map(|e| OrderEvent::decode(e.payload.as_slice()).ok())
            .inspect(|e| assert_eq!(e.source, OrderSource::AmazonReport as i32))
            .filter_map(|e| e.report_row)
            .collect()
    }

    #[tokio::test]
    async fn a_creators_tag_is_made_once_and_then_answered_from_the_database() {
        let store = amazon(Arc::default()).await;
        let s = setup(&store).await;
        let tags = s
            .ads
            .tags(
                &s.integration,
                &[subject(7, 42), subject(7, 43), subject(7, 42)],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tags.len(), 3);
        assert_eq!(
            tags[0].tag,
            "?maas=maas_adg_api_123456789_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=campaign-7&aa_adgroupid=creator-42&aa_creativeid=campaign-7-creator-42"
        );
        assert_eq!(tags[1].tag_creative_id, "campaign-7-creator-43");
        assert_eq!(tags[2].tag, tags[0].tag, "the same creator, the same tag");

        let again = s
            .ads
            .tags(&s.integration, &[subject(7, 43)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again[0].tag, tags[1].tag);
        assert_eq!(again[0].created_at, tags[1].created_at);
        assert_eq!(
            store
                .requests_to("GET /attribution/tags/nonMacroTemplateTag")
                .len(),
            1,
            "Amazon is asked only for creators without a tag"
        );
    }

    #[tokio::test]
    async fn other_providers_have_no_tags_or_reports() {
        let db = Database::new(
            "postgres://postgres@127.0.0.1:5432/unused",
            crate::SCHEMA,
            PoolOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let sealer = mock::sealer();
        let http =
            StoreHttp::new(mock::fast_http(), sealer.clone()).unwrap_or_else(|e| panic!("{e}"));
        let ads = AmazonAds::new(db, AmazonAttribution::new(http));
        let sandbox = mock::integration(&sealer, Provider::Sandbox, "", &[]);
        let tags = ads.tags(&sandbox, &[subject(1, 2)]).await;
        assert!(
            matches!(&tags, Err(Error::FailedPrecondition(why)) if why.starts_with("PROVIDER_SANDBOX")),
            "{tags:?}"
        );
        let import = ads.import(&sandbox, (day(1), day(2))).await;
        assert!(
            matches!(import, Err(Error::FailedPrecondition(_))),
            "{import:?}"
        );
    }

    #[tokio::test]
    async fn amazon_unreachable_stores_no_tag() {
        let store = MockStore::start(|_| mock::Reply::empty(503)).await;
        let s = setup(&store).await;
        let result = s.ads.tags(&s.integration, &[subject(7, 42)]).await;
        assert!(
            matches!(
                result,
                Err(Error::Store(crate::adapters::AdapterError::Unavailable(_)))
            ),
            "{result:?}"
        );
        let mut conn = s.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let stored = store::tags(&mut conn, 1, s.integration.id, &[subject(7, 42)])
            .await
            .unwrap_or_default();
        assert!(stored.is_empty());
    }

    #[tokio::test]
    async fn a_revised_day_replaces_its_figures_and_is_published_again() {
        let report = Arc::new(Mutex::new(json!([
            entry("20250301", "campaign-7-creator-42", 3, 89.97),
            entry("20250302", "campaign-7-creator-42", 1, 20.0),
            // A tag the brand made elsewhere: stored, not published.
            entry("20250301", "brand-own-ad", 5, 100.0),
        ])));
        let store = amazon(report.clone()).await;
        let s = setup(&store).await;
        s.ads
            .tags(&s.integration, &[subject(7, 42)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let days = (day(1), day(7));

        let first = s.ads.import(&s.integration, days).await;
        assert_eq!(
            first.ok(),
            Some(Stored {
                reported: 3,
                created: 3,
                revised: 0,
                unchanged: 0
            })
        );
        let rows = published(&s.db).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (
                rows[0].campaign_id,
                rows[0].creator_id,
                rows[0].day.as_str()
            ),
            (7, 42, "2025-03-01")
        );
        assert_eq!(rows[0].purchases, 3);
        assert_eq!(rows[0].sales.as_ref().map(|m| m.amount_minor), Some(8997));
        assert_eq!(rows[0].revision, 1);

        // The same report again changes nothing.
        let again = s.ads.import(&s.integration, days).await;
        assert_eq!(again.ok().map(|s| s.unchanged), Some(3));
        assert_eq!(published(&s.db).await.len(), 2);

        // An import whose fetch began before the rows were stored (a backfill overtaken by the
        // hourly import) leaves them as they are, whatever it read.
        let stale = vec![crate::adapters::amazon::ReportRow {
            campaign_id: "campaign-7".to_owned(),
            ad_group_id: "creator-42".to_owned(),
            creative_id: "campaign-7-creator-42".to_owned(),
            date: day(1),
            purchases: 1,
            sales_minor: 1_000,
            currency: "USD".to_owned(),
        }];
        let mut conn = s.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let before = store::clock(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            - chrono::Duration::hours(1);
        let overtaken = conn
            .transaction::<_, DbError, _>(async |conn| {
                store::store_report(conn, 1, s.integration.id, days, &stale, true, before).await
            })
            .await;
        drop(conn);
        assert_eq!(overtaken.ok().map(|s| (s.created, s.revised)), Some((0, 0)));
        assert_eq!(published(&s.db).await.len(), 2);

        // A report whose row of the 2nd cannot be read (left out): the 2nd keeps its figures,
        // as a row Amazon reported, not one it stopped reporting.
        let mut unreadable = entry("20250302", "campaign-7-creator-42", 1, 20.0);
        unreadable["attributedSales14d"] = json!("n/a");
        if let Ok(mut rows) = report.lock() {
            *rows = json!([
                entry("20250301", "campaign-7-creator-42", 3, 89.97),
                unreadable,
                entry("20250301", "brand-own-ad", 5, 100.0),
            ]);
        }
        let partial = s.ads.import(&s.integration, days).await;
        assert_eq!(partial.ok().map(|s| (s.revised, s.unchanged)), Some((0, 2)));
        assert_eq!(published(&s.db).await.len(), 2, "nothing dropped");

        // Amazon revises the 1st and no longer reports the 2nd.
        if let Ok(mut rows) = report.lock() {
            *rows = json!([
                entry("20250301", "campaign-7-creator-42", 4, 109.97),
                entry("20250301", "brand-own-ad", 5, 100.0),
            ]);
        }
        let revised = s.ads.import(&s.integration, days).await;
        assert_eq!(
            revised.ok(),
            Some(Stored {
                reported: 2,
                created: 0,
                revised: 2,
                unchanged: 1
            })
        );
        let rows = published(&s.db).await;
        assert_eq!(rows.len(), 4, "{rows:?}");
        let first_day = &rows[2..]
            .iter()
            .find(|r| r.day == "2025-03-01")
            .cloned()
            .unwrap_or_default();
        assert_eq!((first_day.purchases, first_day.revision), (4, 2));
        assert_eq!(
            first_day.sales.as_ref().map(|m| m.amount_minor),
            Some(10997)
        );
        assert_eq!(first_day.id, rows[0].id, "the same row, revised");
        let second_day = &rows[2..]
            .iter()
            .find(|r| r.day == "2025-03-02")
            .cloned()
            .unwrap_or_default();
        assert_eq!((second_day.purchases, second_day.revision), (0, 2));

        let stored = store::list_report_rows(&s.db, 1, s.integration.id, None, 10)
            .await
            .unwrap_or_default();
        assert_eq!(stored.len(), 3, "one row per tag and day");
        assert_eq!(
            store::list_report_rows(&s.db, 2, s.integration.id, None, 10)
                .await
                .map(|rows| rows.len())
                .ok(),
            Some(0),
            "another brand sees none"
        );
    }

    #[tokio::test]
    async fn the_importer_takes_recent_days_under_a_lease() {
        let store = amazon(Arc::new(Mutex::new(json!([])))).await;
        let s = setup(&store).await;
        let every = Duration::from_secs(60);
        assert_eq!(
            import_all(&s.ads, every, &std::sync::Arc::default())
                .await
                .ok(),
            Some(1)
        );
        let request = store.requests_to("POST /attribution/report");
        let today = Utc::now().date_naive();
        let (start, end) = next_import(today, None);
        assert_eq!(
            request[0].json()["startDate"],
            start.format("%Y%m%d").to_string()
        );
        assert_eq!(
            request[0].json()["endDate"],
            end.format("%Y%m%d").to_string()
        );

        // Another replica holds the lease: this one skips the integration.
        let until = Utc::now() + chrono::Duration::minutes(5);
        let lease = rounds::Lease {
            job: JOB,
            brand_id: 1,
            integration_id: s.integration.id,
            holder: "another replica",
        };
        let claimed = rounds::claim(&s.db, &lease, until).await;
        assert_eq!(
            claimed.ok(),
            Some(Some(Some(json!(today)))),
            "the last day imported is kept"
        );
        assert_eq!(
            import_all(&s.ads, every, &std::sync::Arc::default())
                .await
                .ok(),
            Some(0)
        );
        assert_eq!(store.requests_to("POST /attribution/report").len(), 1);
    }
}
