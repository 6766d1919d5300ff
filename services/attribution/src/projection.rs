//! Applying PlanService's and CodeMintService's events: attribution's own copy of plans
//! (commission, attribution window, holding period, end date, report visibility), campaigns
//! (which plan, archived) and codes (creator, campaign, link). Runs inside the stream
//! consumer's transaction, which also prices the Amazon report rows that were waiting for a
//! plan or campaign it brings (`amazon_reports::reprice`).

use chrono::DateTime;
use diesel_async::AsyncPgConnection;
use tracking_api::common::v1::Provider;
use tracking_api::mint::v1::{CodeEvent, CodeStatus, MANUAL, STORE_COLLISION};
use tracking_api::plan::v1::{PlanEvent, commission, plan_event::Subject};
use tracking_db::DbError;
use tracking_events::{Apply, BoxFuture};

use crate::amazon_reports;
use crate::attribute;
use crate::convert::from_timestamp;
use crate::domain::attribution::CLOCK_SKEW;
use crate::events;
use crate::store::conversions::Collided;
use crate::store::pending;
use crate::store::projection::{self, CodeChange, CodeRow, PlanRow, Released};

pub struct Plans;

impl Apply<PlanEvent> for Plans {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        _seq: i64,
        event: &'a PlanEvent,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            let brand_id = event.brand_id;
            match &event.subject {
                Some(Subject::Plan(plan)) => {
                    let (bps, fixed, currency) =
                        match plan.commission.as_ref().and_then(|c| c.kind.as_ref()) {
                            Some(commission::Kind::PercentBps(bps)) => (Some(*bps), None, None),
                            Some(commission::Kind::FixedPerOrder(money)) => {
                                (None, Some(money.amount_minor), Some(money.currency.clone()))
                            }
                            None => (None, None, None),
                        };
                    let row = PlanRow {
                        brand_id,
                        plan_id: plan.id,
                        integration_id: plan.integration_id,
                        provider: Provider::try_from(plan.provider)
                            .unwrap_or(Provider::Unspecified)
                            .as_str_name()
                            .to_owned(),
                        commission_bps: bps,
                        commission_fixed_minor: fixed,
                        commission_currency: currency,
                        attribution_window_days: if plan.attribution_window_days > 0 {
                            plan.attribution_window_days
                        } else {
                            30
                        },
                        holding_period_days: plan.holding_period_days.max(0),
                        ends_at: plan.ends_at.as_ref().and_then(from_timestamp),
                        report_visible: plan.report_visible,
                    };
                    let changed_at = plan
                        .updated_at
                        .as_ref()
                        .and_then(from_timestamp)
                        .unwrap_or_else(chrono::Utc::now);
                    let first = projection::get_plan(conn, brand_id, plan.id)
                        .await?
                        .is_none();
                    if first {
                        // Orders looking for this plan must not pass it unseen. The pricing lock
                        // (which repricing below takes anyway) first, in the order the order
                        // consumer takes both, which would otherwise deadlock with this.
                        crate::store::amazon_reports::lock_pricing(conn).await?;
                        pending::lock_matching(conn).await?;
                    }
                    projection::upsert_plan(conn, &row, changed_at).await?;
                    if first {
                        // Orders that reached attribution before their plan are attributed now.
                        let waiting = pending::take_for_plan(conn, brand_id, plan.id).await?;
                        if !waiting.is_empty() {
                            attribute::retry_pending(conn, waiting).await?;
                        }
                    }
                }
                Some(Subject::Campaign(campaign)) => {
                    projection::upsert_campaign(
                        conn,
                        brand_id,
                        campaign.id,
                        campaign.plan_id,
                        campaign.archived,
                    )
                    .await?;
                }
                Some(Subject::RosterEntry(_)) | None => return Ok(()),
            }
            // Amazon report rows that arrived before this plan or campaign link are priced now.
            let priced = amazon_reports::reprice(conn, brand_id).await?;
            events::report_sales_changed(conn, &priced).await
        })
    }
}

pub struct Codes;

impl Apply<CodeEvent> for Codes {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        _seq: i64,
        event: &'a CodeEvent,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(apply_codes(conn, std::slice::from_ref(event)))
    }

    /// The batch in runs of distinct codes (a code that changes twice in a batch starts a new
    /// run), each applied with set-based statements as its events would be one by one. Orders
    /// waiting for several codes of one run are retried once, with all of them known.
    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        events: &'a [(i64, CodeEvent)],
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            let mut run: Vec<CodeEvent> = Vec::new();
            let mut ids = std::collections::HashSet::new();
            for (_, event) in events {
                let id = event.code.as_ref().map(|c| (event.brand_id, c.id));
                if id.is_some_and(|id| !ids.insert(id)) {
                    apply_codes(conn, &run).await?;
                    run.clear();
                    ids.clear();
                    ids.extend(id);
                }
                run.push(event.clone());
            }
            apply_codes(conn, &run).await
        })
    }
}

/// The text a code held only while it waited for its push, when its last rename is the store
/// turning that text down as another discount's.
fn collided(event: &CodeEvent) -> Option<Collided> {
    let code = event.code.as_ref()?;
    let (at, change) = code
        .history
        .iter()
        .enumerate()
        .rev()
        .find(|(_, change)| !change.to_code.is_empty())?;
    if change.reason != STORE_COLLISION || !change.to_code.eq_ignore_ascii_case(&code.code) {
        return None;
    }
    // Since when the code had the turned-down text: its rename to it, else its minting.
    let since = code.history[..at]
        .iter()
        .rev()
        .find(|earlier| !earlier.to_code.is_empty())
        .filter(|earlier| earlier.to_code.eq_ignore_ascii_case(&change.from_code))
        .map_or(code.created_at.as_ref(), |earlier| {
            earlier.changed_at.as_ref()
        })
        .and_then(from_timestamp)?;
    Some(Collided {
        brand_id: event.brand_id,
        code_id: code.id,
        creator_id: code.creator_id,
        campaign_id: code.campaign_id,
        plan_id: code.plan_id,
        text_lower: change.from_code.trim().to_lowercase(),
        since: since - CLOCK_SKEW,
        renamed_at: change.changed_at.as_ref().and_then(from_timestamp)?,
    })
}

/// The former texts of a code that the store went on taking after a brand's edit, until when.
fn released(event: &CodeEvent) -> Vec<Released> {
    let Some(code) = event.code.as_ref() else {
        return Vec::new();
    };
    code.history
        .iter()
        .filter(|change| change.reason == MANUAL && !change.from_code.is_empty())
        .filter_map(|change| {
            Some(Released {
                brand_id: event.brand_id,
                code_id: code.id,
                text_lower: change.from_code.trim().to_lowercase(),
                renamed_at: change.changed_at.as_ref().and_then(from_timestamp)?,
                released_at: change.released_at.as_ref().and_then(from_timestamp)?,
            })
        })
        .collect()
}

/// Applies code events of distinct codes: stores them, then attributes the orders that used their
/// codes before the codes reached us.
async fn apply_codes(conn: &mut AsyncPgConnection, events: &[CodeEvent]) -> Result<(), DbError> {
    let rows: Vec<CodeChange> = events
        .iter()
        .filter_map(|event| {
            let code = event.code.as_ref()?;
            let links = code.links.clone().unwrap_or_default();
            // The last change of text, if the code was renamed: to the text it has now.
            let renamed = code
                .history
                .iter()
                .rev()
                .find(|change| !change.to_code.is_empty())
                .filter(|change| change.to_code.eq_ignore_ascii_case(&code.code));
            let text_since = match renamed {
                Some(change) => change.changed_at.as_ref().and_then(from_timestamp),
                None => code.created_at.as_ref().and_then(from_timestamp),
            };
            let changed_at = code
                .updated_at
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or_else(chrono::Utc::now);
            let row = CodeRow {
                brand_id: event.brand_id,
                code_id: code.id,
                campaign_id: code.campaign_id,
                creator_id: code.creator_id,
                plan_id: code.plan_id,
                integration_id: code.integration_id,
                code: code.code.clone(),
                slug: links.slug,
                destination_url: links.destination_url,
                expires_at: links.expires_at.as_ref().and_then(from_timestamp),
                active: code.status != CodeStatus::Disabled as i32,
                version: 0,
                text_since,
            };
            Some(CodeChange {
                row,
                changed_at,
                renamed_from: renamed
                    .map(|change| change.from_code.clone())
                    .unwrap_or_default(),
                collided: renamed.is_some_and(|change| change.reason == STORE_COLLISION),
            })
        })
        .collect();
    let mut texts: Vec<(i64, i64, String)> = rows
        .iter()
        .map(|change| &change.row)
        .filter(|row| !row.code.is_empty())
        .map(|row| (row.brand_id, row.integration_id, row.code.to_lowercase()))
        .collect();
    if !texts.is_empty() {
        pending::lock_matching(conn).await?;
    }
    let dropped = projection::upsert_codes(conn, &rows).await?;
    // Sales credited by a text the store turned down are taken back: a collision's, and one the
    // code left with no rename (a refused edit, announced while the store was asked).
    let mut taken_back: Vec<Collided> = events.iter().filter_map(collided).collect();
    taken_back.extend(dropped.into_iter().filter_map(|text| {
        let row = &rows
            .iter()
            .find(|change| {
                (change.row.brand_id, change.row.code_id) == (text.brand_id, text.code_id)
            })?
            .row;
        Some(Collided {
            brand_id: text.brand_id,
            code_id: text.code_id,
            creator_id: row.creator_id,
            campaign_id: row.campaign_id,
            plan_id: row.plan_id,
            text_lower: text.text_lower,
            since: text
                .since
                .map_or(DateTime::<chrono::Utc>::MIN_UTC, |since| since - CLOCK_SKEW),
            renamed_at: text.left_at,
        })
    }));
    attribute::reverse_collided(conn, &taken_back).await?;
    let released: Vec<Released> = events.iter().flat_map(released).collect();
    texts.extend(projection::extend_former_texts(conn, &released).await?);
    // Orders that used these codes before they reached us (or their former texts while the store
    // still took them) are attributed now.
    let waiting = pending::take_for_codes(conn, &texts).await?;
    if waiting.is_empty() {
        return Ok(());
    }
    attribute::retry_pending(conn, waiting).await
}
