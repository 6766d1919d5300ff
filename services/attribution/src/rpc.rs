//! AttributionService's gRPC handlers: proto ↔ domain, nothing else.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate, Utc};
use futures::StreamExt;
use tonic::{Request, Response, Status};
use tracking_api::attribution::v1 as pb;
use tracking_api::attribution::v1::attribution_service_server::AttributionService;
use tracking_db::Database;
use tracking_events::EventLog;
use tracking_server::paging::Page;
use tracking_server::streams::{self, ResponseStream};
use tracking_server::{Claims, Role};

use crate::convert::{conversion_to_proto, from_timestamp, report_sale_to_proto, timestamp};
use crate::domain::clicks;
use crate::error::Error;
use crate::events;
use crate::links::{ClickInfo, Links, Unrecorded};
use crate::report;
use crate::store::conversions::{self, Entry, Filter, Kind};
use crate::store::{alerts, clicks as stored_clicks, projection, reads};
use tracking_server::fields::{MAX_REQUEST_ID, check_text};

/// The service's state, shared by every call.
#[derive(Clone, Debug)]
pub struct Attribution {
    pub(crate) db: Database,
    pub(crate) links: Links,
    pub(crate) log: EventLog,
}

/// Longest range a performance read covers.
const MAX_RANGE_DAYS: i64 = 366;

fn id(field: &str, value: i64) -> Result<i64, Error> {
    if value > 0 {
        Ok(value)
    } else {
        Err(Error::invalid(field, "must be a positive id"))
    }
}

fn day(field: &str, text: &str) -> Result<NaiveDate, Error> {
    // chrono reads signed years of any length; a year far out of range would overflow the
    // default range's arithmetic.
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|date| (1..=9999).contains(&date.year()))
        .ok_or_else(|| Error::invalid(field, "must be a date YYYY-MM-DD"))
}

/// The range's days, both inclusive; the last 30 days when empty.
fn range(range: Option<&pb::DayRange>) -> Result<(NaiveDate, NaiveDate), Error> {
    let today = Utc::now().date_naive();
    let range = range.cloned().unwrap_or_default();
    let to = if range.to.is_empty() {
        today
    } else {
        day("range.to", &range.to)?
    };
    let from = if range.from.is_empty() {
        to - Duration::days(29)
    } else {
        day("range.from", &range.from)?
    };
    if from > to {
        return Err(Error::invalid("range.from", "must not be after range.to"));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(Error::invalid(
            "range",
            format!("at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

fn conversion_rate_bps(orders: i64, clicks: i64) -> i32 {
    if clicks <= 0 {
        0
    } else {
        // Orders by code need no click: a rate far above 100 % is kept at i32's limit.
        i32::try_from(i128::from(orders) * 10_000 / i128::from(clicks)).unwrap_or(i32::MAX)
    }
}

fn add_currency(figures: &mut BTreeMap<String, pb::CurrencyFigures>, row: &reads::SalesDay) {
    let entry = figures
        .entry(row.currency.clone())
        .or_insert_with(|| pb::CurrencyFigures {
            currency: row.currency.clone(),
            ..pb::CurrencyFigures::default()
        });
    entry.revenue_minor += row.revenue_minor;
    entry.discount_minor += row.discount_minor;
    entry.commission_pending_minor += row.pending_minor;
    entry.commission_approved_minor += row.approved_minor;
    entry.commission_reversed_minor += row.reversed_minor;
    entry.commission_adjusted_minor += row.adjusted_minor;
}

/// Totals and a daily series from the aggregates.
fn performance(
    sales: &[reads::SalesDay],
    clicks: &[reads::ClicksDay],
    report_visible: bool,
) -> pb::Performance {
    #[derive(Default)]
    struct Acc {
        clicks: i64,
        orders: i64,
        code_uses: i64,
        currencies: BTreeMap<String, pb::CurrencyFigures>,
    }
    fn finish(acc: Acc) -> pb::Figures {
        pb::Figures {
            clicks: acc.clicks,
            orders: acc.orders,
            conversion_rate_bps: conversion_rate_bps(acc.orders, acc.clicks),
            code_uses: acc.code_uses,
            currencies: acc.currencies.into_values().collect(),
        }
    }
    let mut total = Acc::default();
    let mut days: BTreeMap<NaiveDate, Acc> = BTreeMap::new();
    for row in clicks {
        total.clicks += row.clicks;
        days.entry(row.day).or_default().clicks += row.clicks;
    }
    for row in sales {
        let day = days.entry(row.day).or_default();
        for acc in [&mut total, day] {
            acc.orders += row.orders;
            acc.code_uses += row.code_uses;
            add_currency(&mut acc.currencies, row);
        }
    }
    pb::Performance {
        totals: Some(finish(total)),
        daily: days
            .into_iter()
            .map(|(day, acc)| pb::DailyFigures {
                day: day.to_string(),
                figures: Some(finish(acc)),
            })
            .collect(),
        report_visible,
    }
}

impl Attribution {
    /// The campaign's plan id (0 when none is linked); NOT_FOUND for another brand's campaign
    /// or one this service has not seen.
    async fn campaign_plan(&self, brand_id: i64, campaign_id: i64) -> Result<i64, Error> {
        let campaign_id = id("campaign_id", campaign_id)?;
        projection::campaign_plan(&self.db, brand_id, campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("campaign {campaign_id} not found")))
    }

    async fn report_visible(&self, brand_id: i64, plan_id: i64) -> Result<bool, Error> {
        if plan_id == 0 {
            return Ok(false);
        }
        let mut conn = self.db.conn().await?;
        Ok(projection::get_plan(&mut conn, brand_id, plan_id)
            .await?
            .is_some_and(|plan| plan.report_visible))
    }

    async fn performance(
        &self,
        brand_id: i64,
        campaign_id: i64,
        creator_id: Option<i64>,
        range_req: Option<&pb::DayRange>,
    ) -> Result<pb::Performance, Error> {
        let plan_id = self.campaign_plan(brand_id, campaign_id).await?;
        let days = range(range_req)?;
        let sales = reads::sales(&self.db, brand_id, campaign_id, creator_id, days).await?;
        let clicks = reads::clicks(&self.db, brand_id, campaign_id, creator_id, days).await?;
        let visible = self.report_visible(brand_id, plan_id).await?;
        Ok(performance(&sales, &clicks, visible))
    }
}

fn text_field(field: &str, value: &str, max: usize) -> Result<(), Error> {
    check_text(value, max).map_err(|message| Error::invalid(field, message))
}

#[tonic::async_trait]
impl AttributionService for Attribution {
    #[tracing::instrument(skip_all)]
    async fn record_click(
        &self,
        request: Request<pb::RecordClickRequest>,
    ) -> Result<Response<pb::RecordClickResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let mut req = request.into_inner();
        if req.slug.is_empty() {
            return Err(Error::invalid("slug", "is required").into());
        }
        text_field("request_id", &req.request_id, MAX_REQUEST_ID)?;
        text_field("slug", &req.slug, 100)?;
        if !req.click_id.is_empty() && !clicks::valid_click_id(&req.click_id) {
            return Err(
                Error::invalid("click_id", "at most 64 characters of [A-Za-z0-9_-]").into(),
            );
        }
        let now = Utc::now();
        let clicked_at = match req.clicked_at.as_ref() {
            None => None,
            Some(ts) => {
                let at = from_timestamp(ts)
                    .ok_or_else(|| Error::invalid("clicked_at", "not a valid timestamp"))?;
                if at > now + Duration::minutes(5) || at < now - Duration::days(7) {
                    return Err(
                        Error::invalid("clicked_at", "must be within the last 7 days").into(),
                    );
                }
                Some(at)
            }
        };
        if !req.country.is_empty()
            && (req.country.len() != 2 || !req.country.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err(Error::invalid("country", "must be ISO 3166-1 alpha-2").into());
        }
        text_field("referrer_host", &req.referrer_host, 255)?;
        text_field("user_agent", &req.user_agent, 1000)?;
        text_field("visitor", &req.visitor, 500)?;
        let derived = req.click_id.is_empty() && !req.request_id.is_empty();
        if derived {
            req.click_id = self.links.request_click_id(brand_id, &req.request_id);
        }
        let link = self
            .links
            .resolve_fresh(&req.slug)
            .await
            .map_err(Error::from)?
            .filter(|link| link.brand_id == brand_id)
            .ok_or_else(|| Error::NotFound(format!("link {} not found", req.slug)))?;
        // A click reported late counts if the link still worked when it was made.
        if !link.active
            || link
                .expires_at
                .is_some_and(|at| at <= clicked_at.unwrap_or(now))
        {
            return Err(Error::FailedPrecondition(format!("link {} has ended", req.slug)).into());
        }
        // A retry of a stored click is written again and skipped; an id another link's click
        // holds is refused, not counted as if it were stored: looked up before the click is
        // queued, and again once it is written (the writer keeps the first click of an id, which
        // may have been queued beside this one).
        let taken_elsewhere = || async {
            if req.click_id.is_empty() {
                return Ok(());
            }
            let holder = stored_clicks::code_of(&self.db, brand_id, &req.click_id)
                .await
                .map_err(Error::from)?;
            if holder.is_some_and(|code_id| code_id != link.code_id) {
                // The id derived from a request id: that request id was another request's.
                return Err(if derived {
                    Error::invalid("request_id", "was used for a click on another link")
                } else {
                    Error::AlreadyExists(format!(
                        "click_id {} is recorded for another link",
                        req.click_id
                    ))
                });
            }
            Ok(())
        };
        taken_elsewhere().await?;
        let info = ClickInfo {
            click_id: (!req.click_id.is_empty()).then_some(req.click_id.clone()),
            clicked_at,
            referrer: req.referrer_host,
            country: req.country,
            user_agent: req.user_agent,
            visitor: req.visitor,
        };
        let counted = self
            .links
            .record_written(&link, info)
            .await
            .map_err(|why| match why {
                Unrecorded::Full => Error::ResourceExhausted(
                    "clicks are arriving faster than they are written; retry with backoff"
                        .to_owned(),
                ),
                Unrecorded::Stopped => Error::Unavailable("the server is stopping; retry".to_owned()),
                Unrecorded::NotYet { .. } if derived => Error::Unavailable(
                    "the click is not stored yet (the database is slow or down); retry with the same request_id, which counts it once"
                        .to_owned(),
                ),
                Unrecorded::NotYet { click_id } => Error::Unavailable(format!(
                    "the click is not stored yet (the database is slow or down); retry with click_id {click_id}, which counts it once"
                )),
                Unrecorded::NoId => Error::Internal("no click id could be made".to_owned()),
            })?;
        taken_elsewhere().await?;
        Ok(Response::new(pb::RecordClickResponse {
            counted: counted.is_some(),
            click_id: counted.unwrap_or(req.click_id),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_campaign_performance(
        &self,
        request: Request<pb::GetCampaignPerformanceRequest>,
    ) -> Result<Response<pb::GetCampaignPerformanceResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let performance = self
            .performance(brand_id, req.campaign_id, None, req.range.as_ref())
            .await?;
        Ok(Response::new(pb::GetCampaignPerformanceResponse {
            performance: Some(performance),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_creator_performance(
        &self,
        request: Request<pb::GetCreatorPerformanceRequest>,
    ) -> Result<Response<pb::GetCreatorPerformanceResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let creator_id = id("creator_id", req.creator_id)?;
        let performance = self
            .performance(
                brand_id,
                req.campaign_id,
                Some(creator_id),
                req.range.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::GetCreatorPerformanceResponse {
            performance: Some(performance),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_conversions(
        &self,
        request: Request<pb::ListConversionsRequest>,
    ) -> Result<Response<pb::ListConversionsResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        self.campaign_plan(brand_id, req.campaign_id).await?;
        if req.creator_id < 0 {
            return Err(Error::invalid("creator_id", "must be a positive id, or 0 for all").into());
        }
        let status = match pb::ConversionStatus::try_from(req.status) {
            Ok(pb::ConversionStatus::Unspecified) => None,
            Ok(pb::ConversionStatus::Pending) => Some("pending"),
            Ok(pb::ConversionStatus::Approved) => Some("approved"),
            Ok(pb::ConversionStatus::Reversed) => Some("reversed"),
            Err(_) => return Err(Error::invalid("status", "unknown status").into()),
        };
        let method = match pb::AttributionMethod::try_from(req.method) {
            Ok(pb::AttributionMethod::Unspecified) => None,
            Ok(pb::AttributionMethod::Code) => Some("code"),
            Ok(pb::AttributionMethod::Click) => Some("click"),
            Err(_) => return Err(Error::invalid("method", "unknown method").into()),
        };
        let kind = match pb::ConversionKind::try_from(req.kind) {
            Ok(pb::ConversionKind::Unspecified) => None,
            Ok(pb::ConversionKind::Order) => Some(Kind::Order),
            Ok(pb::ConversionKind::AmazonReportDay) => Some(Kind::AmazonReportDay),
            Err(_) => return Err(Error::invalid("kind", "unknown kind").into()),
        };
        let filter = Filter {
            creator_id: (req.creator_id > 0).then_some(req.creator_id),
            status,
            method,
            kind,
        };
        let page = Page::parse(req.page.as_ref())?;
        let entries = conversions::entries(
            &self.db,
            brand_id,
            req.campaign_id,
            &filter,
            page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(Error::from)?;
        let (entries, page) = page.finish(entries, Entry::id);
        let ids: Vec<i64> = entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Order(row) => Some(row.id),
                Entry::AmazonReportDay(_) => None,
            })
            .collect();
        let mut conn = self.db.conn().await.map_err(Error::from)?;
        let adjustments = conversions::adjustments(&mut conn, brand_id, &ids)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListConversionsResponse {
            conversions: entries
                .iter()
                .map(|entry| match entry {
                    Entry::Order(row) => conversion_to_proto(row, &adjustments),
                    Entry::AmazonReportDay(sale) => report_sale_to_proto(sale),
                })
                .collect(),
            page: Some(page),
        }))
    }

    type ExportCreatorReportStream = ResponseStream<pb::ExportCreatorReportResponse>;

    #[tracing::instrument(skip_all)]
    async fn export_creator_report(
        &self,
        request: Request<pb::ExportCreatorReportRequest>,
    ) -> Result<Response<Self::ExportCreatorReportStream>, Status> {
        let claims = Claims::of(&request)?.clone();
        let req = request.into_inner();
        let creator_id = id("creator_id", req.creator_id)?;
        let brand_id = claims.brand_id;
        if claims.role == Role::Creator && claims.creator_id != Some(creator_id) {
            return Err(Status::permission_denied(
                "a creator token may export only its own report",
            ));
        }
        let plan_id = self.campaign_plan(brand_id, req.campaign_id).await?;
        if claims.role == Role::Creator && !self.report_visible(brand_id, plan_id).await? {
            return Err(Status::permission_denied(
                "the brand has not made this report visible to creators",
            ));
        }
        let stream = report::csv(self.db.clone(), brand_id, req.campaign_id, creator_id)
            .map(|chunk| chunk.map(|chunk| pb::ExportCreatorReportResponse { chunk }));
        Ok(Response::new(Box::pin(stream)))
    }

    type StreamConversionsStream = ResponseStream<pb::StreamConversionsResponse>;

    #[tracing::instrument(skip_all)]
    async fn stream_conversions(
        &self,
        request: Request<pb::StreamConversionsRequest>,
    ) -> Result<Response<Self::StreamConversionsStream>, Status> {
        let claims = Claims::of(&request)?;
        let brand_id = claims.brand_scope()?;
        let req = request.get_ref();
        let campaign_id = req.campaign_id;
        self.campaign_plan(brand_id, campaign_id).await?;
        // Scoped to the brand even for service tokens: a campaign id names one brand's campaign.
        let brand_claims = Claims {
            role: Role::Brand,
            ..claims.clone()
        };
        let stream = streams::watch(&self.log, &brand_claims, req.after_seq, move |stored| {
            let event = events::decode(stored)?;
            let mine = event
                .conversion
                .as_ref()
                .is_some_and(|c| c.campaign_id == campaign_id);
            Ok(mine.then_some(pb::StreamConversionsResponse { event: Some(event) }))
        })?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn list_code_alerts(
        &self,
        request: Request<pb::ListCodeAlertsRequest>,
    ) -> Result<Response<pb::ListCodeAlertsResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let campaign = if req.campaign_id == 0 {
            None
        } else {
            self.campaign_plan(brand_id, req.campaign_id).await?;
            Some(req.campaign_id)
        };
        let page = Page::parse(req.page.as_ref())?;
        let rows = alerts::list(&self.db, brand_id, campaign, page.after, page.fetch_limit())
            .await
            .map_err(Error::from)?;
        let (rows, page) = page.finish(rows, |row| row.id);
        Ok(Response::new(pb::ListCodeAlertsResponse {
            alerts: rows
                .into_iter()
                .map(|row| pb::CodeAlert {
                    campaign_id: row.campaign_id,
                    creator_id: row.creator_id,
                    code: row.code,
                    kind: match row.kind.as_str() {
                        "orders_without_clicks" => pb::AlertKind::OrdersWithoutClicks,
                        "spike" => pb::AlertKind::Spike,
                        _ => pb::AlertKind::Unspecified,
                    } as i32,
                    evidence: row.evidence,
                    orders: row.orders,
                    orders_without_click: row.orders_without_click,
                    day: row.day.map(|d| d.to_string()).unwrap_or_default(),
                    day_orders: row.day_orders,
                    baseline_per_day_milli: row.baseline_milli,
                    raised_at: Some(timestamp(row.raised_at)),
                })
                .collect(),
            page: Some(page),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_takes_only_dates_of_four_digit_years() {
        let of = |from: &str, to: &str| {
            range(Some(&pb::DayRange {
                from: from.into(),
                to: to.into(),
            }))
        };
        // The lowest date chrono reads: 29 days before it overflowed (a panic, not an answer).
        assert!(matches!(
            of("", "-262143-01-01"),
            Err(Error::InvalidArgument { field, .. }) if field == "range.to"
        ));
        assert!(matches!(
            of("+10000-01-01", "+10000-01-02"),
            Err(Error::InvalidArgument { field, .. }) if field == "range.to"
        ));
        let days = of("2026-01-01", "2026-01-31").ok();
        assert_eq!(
            days,
            NaiveDate::from_ymd_opt(2026, 1, 1).zip(NaiveDate::from_ymd_opt(2026, 1, 31))
        );
    }

    #[test]
    fn the_conversion_rate_stays_positive_however_few_the_clicks() {
        assert_eq!(conversion_rate_bps(1, 3), 3_333);
        assert_eq!(conversion_rate_bps(5, 0), 0);
        assert_eq!(conversion_rate_bps(300_000, 1), i32::MAX);
    }
}
