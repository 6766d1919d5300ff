//! Amazon Ads through the Amazon Attribution API. Amazon has no discount codes and reports
//! aggregates, not orders, so this is no [`StoreAdapter`](super::StoreAdapter) (the gateway
//! answers FAILED_PRECONDITION for codes): it makes each creator's attribution tag and imports the
//! attributed purchases and sales per tag and day.
//!
//! - Auth: a Login with Amazon access token from the integration's `refresh_token`,
//!   `client_id` and `client_secret` (`POST /auth/o2/token`), kept until shortly before it
//!   expires; every call sends `Amazon-Advertising-API-ClientId`, `Amazon-Advertising-API-Scope`
//!   (the `profile_id`) and the bearer token.
//! - Tags: `GET /attribution/tags/nonMacroTemplateTag?publisherIds=…&advertiserIds=…` gives the
//!   template of the integration's `publisher_id` for its `advertiser_id`
//!   (`advertiserAttributionTagMap`); each creator's tag fills its campaign, ad group and
//!   creative ids.
//! - Sales: `POST /attribution/report` (`PERFORMANCE`, grouped by creative, the 14-day attributed
//!   purchases and sales of the `advertiser_id`), followed through `cursorId`; amounts are in the
//!   profile's currency (`GET /v2/profiles/{profile_id}`).
//!
//! The API origin is `https://advertising-api.amazon.com` (North America) unless the
//! integration's `base_url` names another (`https://advertising-api-eu.amazon.com`,
//! `https://advertising-api-fe.amazon.com`, or a local test server, which then also serves the
//! token endpoint).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdapterError;
use super::http::{Reply, StoreHttp, origin};
use super::mapping::json_amount;
pub use crate::domain::amazon::TagIds;
use crate::store::IntegrationRow;
use tracking_server::fields::check_text;

const STORE: &str = "Amazon Attribution";
const REPORT_PAGE: u32 = 5000;

/// One row of the performance report: a creative (creator tag) on one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub campaign_id: String,
    pub ad_group_id: String,
    pub creative_id: String,
    pub date: NaiveDate,
    pub purchases: i64,
    pub sales_minor: i64,
    pub currency: String,
}

/// The Amazon Attribution client.
#[derive(Clone, Debug)]
pub struct AmazonAttribution {
    http: StoreHttp,
    tokens: Arc<Mutex<HashMap<i64, (String, Instant)>>>,
}

struct Session {
    api: String,
    client_id: String,
    profile_id: String,
    token: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl AmazonAttribution {
    pub fn new(http: StoreHttp) -> Self {
        Self {
            http,
            tokens: Arc::default(),
        }
    }

    fn cached_token(&self, integration_id: i64) -> Option<String> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .get(&integration_id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    async fn session(&self, integration: &IntegrationRow) -> Result<Session, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let api = origin(integration, || {
            "https://advertising-api.amazon.com".to_owned()
        });
        let client_id = credentials.get("client_id")?.to_owned();
        let profile_id = credentials.get("profile_id")?.to_owned();
        if let Some(token) = self.cached_token(integration.id) {
            return Ok(Session {
                api,
                client_id,
                profile_id,
                token,
            });
        }
        let token_url = format!("{}/auth/o2/token", lwa_origin(&api));
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", credentials.get("refresh_token")?),
            ("client_id", client_id.as_str()),
            ("client_secret", credentials.get("client_secret")?),
        ];
        let reply = self
            .http
            .send(integration, STORE, |client| {
                client.post(&token_url).form(&form)
            })
            .await?;
        if reply.status.is_client_error() {
            return Err(AdapterError::Misconfigured(format!(
                "Login with Amazon refused the refresh token of integration {}: {}",
                integration.id,
                reply.snippet()
            )));
        }
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a token request"));
        }
        let token: TokenResponse = reply.json(STORE)?;
        // Renewed a minute early, so no call starts with a token about to lapse.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600).saturating_sub(60));
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                integration.id,
                (token.access_token.clone(), Instant::now() + lifetime),
            );
        Ok(Session {
            api,
            client_id,
            profile_id,
            token: token.access_token,
        })
    }

    async fn call(
        &self,
        integration: &IntegrationRow,
        session: &Session,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Reply, AdapterError> {
        let url = format!("{}{path}", session.api);
        let reply = self
            .http
            .send(integration, STORE, |client| {
                let request = client
                    .request(method.clone(), &url)
                    .bearer_auth(&session.token)
                    .header("Amazon-Advertising-API-ClientId", &session.client_id)
                    .header("Amazon-Advertising-API-Scope", &session.profile_id)
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await;
        if matches!(reply, Err(AdapterError::Misconfigured(_))) {
            // The token may have been revoked: the next call asks for a new one.
            self.tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&integration.id);
        }
        let reply = reply?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, path));
        }
        Ok(reply)
    }

    /// The attribution tags of creators, in order: the non-macro template of the integration's
    /// `publisher_id` for its `advertiser_id` (asked once), with each creator's `ids` filled in.
    /// Each is a query string to append to a product page URL.
    pub async fn creator_tags(
        &self,
        integration: &IntegrationRow,
        ids: &[TagIds],
    ) -> Result<Vec<String>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let advertiser_id = credentials.get("advertiser_id")?.to_owned();
        let publisher_id = credentials.get("publisher_id")?.to_owned();
        let session = self.session(integration).await?;
        let reply = self
            .call(
                integration,
                &session,
                reqwest::Method::GET,
                "/attribution/tags/nonMacroTemplateTag",
                &[
                    ("publisherIds", publisher_id.clone()),
                    ("advertiserIds", advertiser_id.clone()),
                ],
                None,
            )
            .await?;
        let body: Value = reply.json(STORE)?;
        let template = body["advertiserAttributionTagMap"][&advertiser_id][&publisher_id]
            .as_str()
            .ok_or_else(|| {
                AdapterError::Misconfigured(format!(
                    "{STORE} has no tag template for advertiser {advertiser_id} and publisher {publisher_id}"
                ))
            })?;
        Ok(ids.iter().map(|ids| fill_tag(template, ids)).collect())
    }

    /// The integration advertiser's attributed purchases and sales per creative and day,
    /// `start..=end`, every page; with how many rows could not be read (left out, logged).
    pub async fn performance(
        &self,
        integration: &IntegrationRow,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<(Vec<ReportRow>, usize), AdapterError> {
        let advertiser_id = self
            .http
            .credentials(integration)?
            .get("advertiser_id")?
            .to_owned();
        let session = self.session(integration).await?;
        let profile = self
            .call(
                integration,
                &session,
                reqwest::Method::GET,
                &format!("/v2/profiles/{}", session.profile_id),
                &[],
                None,
            )
            .await?;
        let profile: Value = profile.json(STORE)?;
        let currency = profile["currencyCode"]
            .as_str()
            .filter(|c| c.len() == 3)
            .ok_or_else(|| AdapterError::Unavailable(format!("{STORE} profile has no currency")))?
            .to_owned();
        let mut rows = Vec::new();
        let mut unreadable = 0;
        let mut cursor = String::new();
        loop {
            let request = json!({
                "reportType": "PERFORMANCE",
                "advertiserIds": advertiser_id,
                "startDate": start.format("%Y%m%d").to_string(),
                "endDate": end.format("%Y%m%d").to_string(),
                "groupBy": "CREATIVE",
                "metrics": "attributedPurchases14d,attributedSales14d",
                "count": REPORT_PAGE,
                "cursorId": cursor,
            });
            let reply = self
                .call(
                    integration,
                    &session,
                    reqwest::Method::POST,
                    "/attribution/report",
                    &[],
                    Some(&request),
                )
                .await?;
            let page: Value = reply.json(STORE)?;
            // A row the importer cannot read (ids no tag of ours could carry, a date or a
            // figure it cannot parse) is left out, logged: failing the import for it would fail
            // every later one the same way, and the days past the window would be lost.
            for entry in page["reports"].as_array().into_iter().flatten() {
                match report_row(entry, &currency) {
                    Some(row) => rows.push(row),
                    None => {
                        unreadable += 1;
                        tracing::error!(
                            integration_id = integration.id,
                            row = %entry,
                            "{STORE} report row unreadable: left out of the import"
                        );
                    }
                }
            }
            match page["cursorId"].as_str().filter(|c| !c.is_empty()) {
                Some(next) if next != cursor => cursor = next.to_owned(),
                _ => return Ok((rows, unreadable)),
            }
        }
    }
}

/// Login with Amazon's region for an API origin (a test server serves both).
fn lwa_origin(api: &str) -> String {
    if api.starts_with("https://advertising-api-eu.amazon.com") {
        "https://api.amazon.co.uk".to_owned()
    } else if api.starts_with("https://advertising-api-fe.amazon.com") {
        "https://api.amazon.co.jp".to_owned()
    } else if api.starts_with("https://advertising-api") {
        "https://api.amazon.com".to_owned()
    } else {
        api.to_owned()
    }
}

/// The template with the creator's ids in its `aa_campaignid`, `aa_adgroupid` and `aa_creativeid`
/// parameters (whatever placeholder they held).
fn fill_tag(template: &str, ids: &TagIds) -> String {
    let (prefix, query) = template.split_once('?').unwrap_or(("", template));
    let params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|param| {
            let key = param.split('=').next().unwrap_or_default();
            let value = match key {
                "aa_campaignid" => Some(&ids.campaign_id),
                "aa_adgroupid" => Some(&ids.ad_group_id),
                "aa_creativeid" => Some(&ids.creative_id),
                _ => None,
            };
            match value {
                Some(value) => format!("{key}={}", encode(value)),
                None => param.to_owned(),
            }
        })
        .collect();
    format!("{prefix}?{}", params.join("&"))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The longest tag id a report row may carry: far past any of ours (`TagIds::of_creator`), which
/// the report's rows are matched against; the rest of the report is stored as it comes.
const MAX_TAG_ID_CHARS: usize = 128;

fn report_row(entry: &Value, currency: &str) -> Option<ReportRow> {
    let text = |key: &str| {
        let id = entry[key]
            .as_str()
            .map(str::to_owned)
            .or_else(|| entry[key].as_u64().map(|n| n.to_string()))
            .unwrap_or_default();
        check_text(&id, MAX_TAG_ID_CHARS).is_ok().then_some(id)
    };
    Some(ReportRow {
        campaign_id: text("campaignId")?,
        ad_group_id: text("adGroupId")?,
        creative_id: text("creativeId")?,
        date: NaiveDate::parse_from_str(entry["date"].as_str()?, "%Y%m%d").ok()?,
        purchases: entry["attributedPurchases14d"].as_i64().unwrap_or(0),
        sales_minor: json_amount(&entry["attributedSales14d"], currency)?,
        currency: currency.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::adapters::mock::{self, MockStore};

    fn setup(store: &MockStore) -> (AmazonAttribution, IntegrationRow) {
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::AmazonAds,
            &store.origin,
            &[
                ("client_id", "amzn1.application-oa2-client.abc"),
                ("client_secret", "secret"),
                ("refresh_token", "Atzr|refresh"),
                ("profile_id", "3456"),
                ("advertiser_id", "987"),
                ("publisher_id", "pub-1"),
            ],
        );
        let http = StoreHttp::new(mock::fast_http(), sealer).unwrap_or_else(|e| panic!("{e}"));
        (AmazonAttribution::new(http), integration)
    }

    fn any_ids() -> TagIds {
        TagIds {
            campaign_id: "c".to_owned(),
            ad_group_id: "a".to_owned(),
            creative_id: "x".to_owned(),
        }
    }

    fn token() -> mock::Reply {
        mock::Reply::json(
            200,
            json!({ "access_token": "Atza|access", "refresh_token": "Atzr|refresh", "token_type": "bearer", "expires_in": 3600 }),
        )
    }

    #[tokio::test]
    async fn makes_a_creators_tag_from_the_publisher_template() {
        let store = MockStore::start(|request| match request.path.as_str() {
            "/auth/o2/token" => token(),
            _ => mock::Reply::json(
                200,
                json!({ "advertiserAttributionTagMap": { "987": { "pub-1":
                    "?maas=maas_adg_api_123456789_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid={insertCampaignId}&aa_adgroupid={insertAdGroupId}&aa_creativeid={insertAdId}" } } }),
            ),
        })
        .await;
        let (amazon, integration) = setup(&store);
        let ids = TagIds {
            campaign_id: "camp-7".to_owned(),
            ad_group_id: "plan 3".to_owned(),
            creative_id: "creator-42".to_owned(),
        };
        let other = TagIds {
            creative_id: "creator-43".to_owned(),
            ..ids.clone()
        };
        let tags = amazon
            .creator_tags(&integration, &[ids, other])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            tags,
            [
                "?maas=maas_adg_api_123456789_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=camp-7&aa_adgroupid=plan%203&aa_creativeid=creator-42",
                "?maas=maas_adg_api_123456789_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=camp-7&aa_adgroupid=plan%203&aa_creativeid=creator-43"
            ]
        );
        assert_eq!(
            store
                .requests_to("GET /attribution/tags/nonMacroTemplateTag")
                .len(),
            1,
            "the template is asked once per call"
        );
        let requests = store.requests();
        let token_request = String::from_utf8_lossy(&requests[0].body).into_owned();
        assert!(token_request.contains("grant_type=refresh_token"));
        let tag_request = &requests[1];
        assert_eq!(tag_request.path, "/attribution/tags/nonMacroTemplateTag");
        assert_eq!(tag_request.param("publisherIds"), Some("pub-1"));
        assert_eq!(tag_request.param("advertiserIds"), Some("987"));
        assert_eq!(
            tag_request.header("authorization"),
            Some("Bearer Atza|access")
        );
        assert_eq!(
            tag_request.header("amazon-advertising-api-clientid"),
            Some("amzn1.application-oa2-client.abc")
        );
        assert_eq!(
            tag_request.header("amazon-advertising-api-scope"),
            Some("3456")
        );
    }

    #[tokio::test]
    async fn imports_attributed_sales_page_by_page() {
        let reports = Arc::new(AtomicUsize::new(0));
        let seen = reports.clone();
        let store = MockStore::start(move |request| match request.path.as_str() {
            "/auth/o2/token" => token(),
            "/v2/profiles/3456" => mock::Reply::json(
                200,
                json!({ "profileId": 3456, "countryCode": "US", "currencyCode": "USD", "timezone": "America/Los_Angeles" }),
            ),
            _ => match seen.fetch_add(1, Ordering::SeqCst) {
                0 => mock::Reply::json(429, json!({ "code": "429", "details": "Too Many Requests" }))
                    .header("Retry-After", "0"),
                1 => mock::Reply::json(
                    200,
                    json!({ "reports": [{ "date": "20250301", "campaignId": "camp-7", "adGroupId": "plan-3",
                        "creativeId": "creator-42", "publisher": "Influencers", "advertiserName": "Brand",
                        "attributedPurchases14d": 3, "attributedSales14d": 89.97 }],
                        "cursorId": "c2", "size": 1 }),
                ),
                _ => mock::Reply::json(
                    200,
                    json!({ "reports": [{ "date": "20250302", "campaignId": "camp-7", "adGroupId": "plan-3",
                        "creativeId": "creator-42", "attributedPurchases14d": 1, "attributedSales14d": 20 },
                        // Rows no import can read (ids a tag's template let anyone set, a
                        // figure that is not one) are left out; the rest is imported.
                        { "date": "20250302", "campaignId": "camp-\u{0}", "adGroupId": "plan-3",
                          "creativeId": "creator-43", "attributedPurchases14d": 1, "attributedSales14d": 5 },
                        { "date": "20250302", "campaignId": "c".repeat(3000), "adGroupId": "plan-3",
                          "creativeId": "creator-44", "attributedPurchases14d": 1, "attributedSales14d": 5 },
                        { "date": "2025-03-02", "campaignId": "camp-7", "adGroupId": "plan-3",
                          "creativeId": "creator-45", "attributedPurchases14d": 1, "attributedSales14d": 5 },
                        { "date": "20250302", "campaignId": "camp-7", "adGroupId": "plan-3",
                          "creativeId": "creator-46", "attributedPurchases14d": 1, "attributedSales14d": "n/a" }],
                        "cursorId": "", "size": 5 }),
                ),
            },
        })
        .await;
        let (amazon, integration) = setup(&store);
        let day = |d| NaiveDate::from_ymd_opt(2025, 3, d).unwrap_or_default();
        let rows = amazon
            .performance(&integration, day(1), day(7))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.1, 4, "the rows left out");
        let rows = rows.0;
        assert_eq!(
            rows,
            vec![
                ReportRow {
                    campaign_id: "camp-7".to_owned(),
                    ad_group_id: "plan-3".to_owned(),
                    creative_id: "creator-42".to_owned(),
                    date: day(1),
                    purchases: 3,
                    sales_minor: 8997,
                    currency: "USD".to_owned(),
                },
                ReportRow {
                    campaign_id: "camp-7".to_owned(),
                    ad_group_id: "plan-3".to_owned(),
                    creative_id: "creator-42".to_owned(),
                    date: day(2),
                    purchases: 1,
                    sales_minor: 2000,
                    currency: "USD".to_owned(),
                },
            ]
        );
        let report_requests = store.requests_to("POST /attribution/report");
        assert_eq!(report_requests.len(), 3, "one 429 retried, two pages");
        let first = report_requests[1].json();
        assert_eq!(first["reportType"], "PERFORMANCE");
        assert_eq!(first["advertiserIds"], "987");
        assert_eq!(first["groupBy"], "CREATIVE");
        assert_eq!(
            first["metrics"],
            "attributedPurchases14d,attributedSales14d"
        );
        assert_eq!(first["startDate"], "20250301");
        assert_eq!(first["endDate"], "20250307");
        assert_eq!(first["cursorId"], "");
        assert_eq!(report_requests[2].json()["cursorId"], "c2");
        assert_eq!(
            store.requests_to("POST /auth/o2/token").len(),
            1,
            "the access token is reused"
        );
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_misconfiguration() {
        let store = MockStore::start(|_| {
            mock::Reply::json(
                400,
                json!({ "error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token" }),
            )
        })
        .await;
        let (amazon, integration) = setup(&store);
        let result = amazon.creator_tags(&integration, &[any_ids()]).await;
        assert!(matches!(result, Err(AdapterError::Misconfigured(_))));
    }

    #[tokio::test]
    async fn a_publisher_without_a_template_is_misconfiguration() {
        let store = MockStore::start(|request| match request.path.as_str() {
            "/auth/o2/token" => token(),
            // Amazon answers only for the advertisers and publishers it knows.
            _ => mock::Reply::json(200, json!({ "advertiserAttributionTagMap": {} })),
        })
        .await;
        let (amazon, integration) = setup(&store);
        let result = amazon.creator_tags(&integration, &[any_ids()]).await;
        assert!(
            matches!(&result, Err(AdapterError::Misconfigured(why)) if why.contains("publisher pub-1")),
            "{result:?}"
        );
    }

    #[test]
    fn login_with_amazon_follows_the_region() {
        assert_eq!(
            lwa_origin("https://advertising-api-eu.amazon.com"),
            "https://api.amazon.co.uk"
        );
        assert_eq!(
            lwa_origin("https://advertising-api.amazon.com"),
            "https://api.amazon.com"
        );
        assert_eq!(lwa_origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
