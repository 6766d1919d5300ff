//! Applying ProviderGateway's order events: attribution of new orders, following known ones
//! through payment, refunds and cancellation, approvals after the holding period, and the
//! aggregates and conversion events that go with every change. Runs inside the stream
//! consumer's transaction (or the approver's), so each change is applied exactly once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::gateway::v1::{Order, OrderEvent, OrderStatus};
use tracking_db::DbError;
use tracking_events::{Apply, BoxFuture};

use crate::convert::from_timestamp;
use crate::domain::alerts;
use crate::domain::attribution::{
    self, Amounts, Claimant, CommissionRule, Line, Method, OrderState, Status,
};
use crate::events;
use crate::store::alerts::{self as alert_store, AlertRow};
use crate::store::conversions::{self, ConversionRow, SalesDelta};
use crate::store::projection::{self, CodeRow, PlanRow};
use crate::store::{clicks, pending};

/// The consumer of `WatchOrders`.
pub struct Orders;

impl Apply<OrderEvent> for Orders {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        _seq: i64,
        event: &'a OrderEvent,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        // Amazon Attribution report rows share the stream (see `amazon_reports`).
        if let Some(row) = &event.report_row {
            return Box::pin(crate::amazon_reports::apply(conn, event.brand_id, row));
        }
        Box::pin(apply_order(conn, event))
    }
}

fn state_of(order: &Order) -> Option<OrderState> {
    Some(match OrderStatus::try_from(order.status).ok()? {
        OrderStatus::Unspecified => return None,
        OrderStatus::Created => OrderState::Created,
        OrderStatus::Paid => OrderState::Paid,
        OrderStatus::PartiallyRefunded => OrderState::PartiallyRefunded,
        OrderStatus::Refunded => OrderState::Refunded,
        OrderStatus::Cancelled => OrderState::Cancelled,
    })
}

async fn apply_order(conn: &mut AsyncPgConnection, event: &OrderEvent) -> Result<(), DbError> {
    let Some(order) = event.order.as_ref() else {
        return Ok(());
    };
    let Some(state) = state_of(order) else {
        return Ok(());
    };
    // Test orders are passed on by the gateway, and never attributed.
    if order.test {
        return Ok(());
    }
    let brand_id = event.brand_id;
    let seen_at = event
        .received_at
        .as_ref()
        .and_then(from_timestamp)
        .unwrap_or_else(Utc::now);
    // Only an order with a code or a click id can wait for, or be found by, a code or click.
    if !order.codes.is_empty() || !order.click_id.is_empty() {
        pending::lock_matching(conn).await?;
    }
    let existing =
        conversions::of_order(conn, brand_id, order.integration_id, &order.store_order_id).await?;
    if existing.is_empty() {
        let key = (
            brand_id,
            order.integration_id,
            order.store_order_id.as_str(),
        );
        if let Some(kept) = pending::get(conn, key).await?
            && let Some(kept) = OrderEvent::decode(kept.as_slice())
                .ok()
                .and_then(|e| e.order)
            && let Some(kept_state) = state_of(&kept)
            && !attribution::is_newer(
                kept_state.rank(),
                kept.refunded_minor,
                state,
                order.refunded_minor,
            )
        {
            // A later state of this order is already waiting for its code or click.
            return Ok(());
        }
        if state.is_void() {
            // Cancelled or refunded before anyone could be credited: no sale to attribute.
            return pending::drop(conn, key).await;
        }
        let created = attribute(conn, brand_id, order, state, seen_at).await?;
        if created {
            pending::drop(conn, key).await
        } else if !order.codes.is_empty() || !order.click_id.is_empty() {
            // Its code or click may not be known yet (the streams are consumed independently):
            // it is attributed when they arrive.
            let codes: Vec<String> = order
                .codes
                .iter()
                .map(|c| c.trim().to_lowercase())
                .collect();
            pending::keep(conn, key, &event.encode_to_vec(), &codes, &order.click_id).await
        } else {
            Ok(())
        }
    } else {
        let mut changed = Vec::new();
        for row in existing {
            if !attribution::is_newer(
                row.order_rank,
                row.order_refunded_minor,
                state,
                order.refunded_minor,
            ) {
                continue;
            }
            let plan = projection::get_plan(conn, brand_id, row.plan_id).await?;
            let holding = plan.as_ref().map_or(0, |p| p.holding_period_days);
            changed.push(follow(conn, row, state, order.refunded_minor, seen_at, holding).await?);
        }
        events::conversion_changed(conn, &changed).await
    }
}

/// The creators an order belongs to: by its codes (case-insensitively, within its
/// integration), else by its click id within the plan's window. Sorted by creator id.
async fn claimants(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    order: &Order,
    ordered_at: DateTime<Utc>,
) -> Result<(Method, Vec<(Claimant, CodeRow, String)>), DbError> {
    let mut lower: Vec<String> = order
        .codes
        .iter()
        .map(|c| c.trim().to_lowercase())
        .collect();
    lower.sort();
    lower.dedup();
    lower.retain(|c| !c.is_empty());
    if !lower.is_empty() {
        let codes =
            projection::codes_matching(conn, brand_id, order.integration_id, &lower).await?;
        let mut by_creator: BTreeMap<i64, (Claimant, CodeRow, String)> = BTreeMap::new();
        for code in codes {
            let key = code.code.to_lowercase();
            let as_on_order = order
                .codes
                .iter()
                .find(|c| c.trim().eq_ignore_ascii_case(&code.code))
                .cloned()
                .unwrap_or_else(|| code.code.clone());
            by_creator.entry(code.creator_id).or_insert((
                Claimant {
                    creator_id: code.creator_id,
                    code: key,
                },
                code,
                as_on_order,
            ));
        }
        if !by_creator.is_empty() {
            return Ok((Method::Code, by_creator.into_values().collect()));
        }
    }
    if !order.click_id.is_empty()
        && let Some(click) = clicks::by_id(conn, brand_id, &order.click_id).await?
        && click.integration_id == order.integration_id
        && let Some(code) = projection::code(conn, brand_id, click.code_id).await?
    {
        let window = projection::get_plan(conn, brand_id, click.plan_id)
            .await?
            .map_or(30, |p| p.attribution_window_days);
        if attribution::click_in_window(click.clicked_at, ordered_at, window) {
            let claimant = Claimant {
                creator_id: click.creator_id,
                code: String::new(),
            };
            return Ok((
                Method::Click,
                vec![(claimant, code, order.click_id.clone())],
            ));
        }
    }
    Ok((Method::Code, Vec::new()))
}

fn commission_rule(plan: Option<&PlanRow>) -> Option<CommissionRule> {
    let plan = plan?;
    match (
        plan.commission_bps,
        plan.commission_fixed_minor,
        &plan.commission_currency,
    ) {
        (Some(bps), _, _) => Some(CommissionRule::PercentBps(bps)),
        (None, Some(amount), Some(currency)) => Some(CommissionRule::FixedPerOrder {
            amount_minor: amount,
            currency: currency.clone(),
        }),
        _ => None,
    }
}

/// Attributes a new order; whether anyone was credited.
async fn attribute(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    order: &Order,
    state: OrderState,
    seen_at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let ordered_at = order
        .occurred_at
        .as_ref()
        .and_then(from_timestamp)
        .unwrap_or(seen_at);
    let (method, claimants) = claimants(conn, brand_id, order, ordered_at).await?;
    if claimants.is_empty() {
        return Ok(false);
    }
    let lines: Vec<Line> = order
        .lines
        .iter()
        .map(|line| Line {
            net_minor: (line.amount_minor - line.discount_minor).max(0),
            discount_minor: line.discount_minor,
            codes: line.codes.iter().map(|c| c.trim().to_lowercase()).collect(),
        })
        .collect();
    let net = (order.subtotal_minor - order.discount_minor).max(0);
    let who: Vec<Claimant> = claimants.iter().map(|(c, _, _)| c.clone()).collect();
    let (rule, shares) = attribution::split(net, order.discount_minor, &lines, &who);
    let mut created = Vec::new();
    for ((_, code, matched), share) in claimants.iter().zip(&shares) {
        let plan = projection::get_plan(conn, brand_id, code.plan_id).await?;
        let (commission, commission_currency) = attribution::commission(
            commission_rule(plan.as_ref()).as_ref(),
            share,
            &order.currency,
        );
        // A plan shared by several campaigns records the sale in each of them.
        let mut campaigns = projection::campaigns_of_plan(conn, brand_id, code.plan_id).await?;
        if !campaigns.contains(&code.campaign_id) {
            campaigns.push(code.campaign_id);
        }
        let shared = campaigns.len() > 1;
        let pending = Amounts {
            status: Status::Pending,
            revenue_minor: share.revenue_minor,
            discount_minor: share.discount_minor,
            commission_minor: commission,
            adjusted_revenue_minor: 0,
            adjusted_commission_minor: 0,
            approve_at: None,
        };
        let holding = plan.as_ref().map_or(0, |p| p.holding_period_days);
        let followed = attribution::follow(
            &pending,
            state,
            order.refunded_minor,
            order.total_minor,
            share.revenue_minor,
            share.discount_minor,
            commission,
            seen_at,
            holding,
        );
        let amounts = attribution::approve(&followed.amounts, seen_at).unwrap_or(followed.amounts);
        for campaign_id in campaigns {
            let row = ConversionRow {
                brand_id,
                id: 0,
                integration_id: order.integration_id,
                store_order_id: order.store_order_id.clone(),
                campaign_id,
                creator_id: code.creator_id,
                code_id: code.code_id,
                plan_id: code.plan_id,
                method: method.as_str().to_owned(),
                matched: matched.clone(),
                split_rule: rule.as_str().to_owned(),
                share_bps: share.share_bps,
                shared,
                status: amounts.status.as_str().to_owned(),
                order_status: state.as_str().to_owned(),
                order_rank: state.rank(),
                currency: order.currency.clone(),
                order_total_minor: order.total_minor,
                order_refunded_minor: order.refunded_minor,
                base_revenue_minor: share.revenue_minor,
                base_discount_minor: share.discount_minor,
                base_commission_minor: commission,
                revenue_minor: amounts.revenue_minor,
                discount_minor: amounts.discount_minor,
                commission_minor: amounts.commission_minor,
                commission_currency: commission_currency.clone(),
                adjusted_revenue_minor: 0,
                adjusted_commission_minor: 0,
                ordered_at,
                approve_at: amounts.approve_at,
                created_at: seen_at,
                updated_at: seen_at,
            };
            let Some(row) = conversions::insert(conn, &row).await? else {
                continue;
            };
            add_contribution(conn, None, &row).await?;
            if method == Method::Code && campaign_id == code.campaign_id {
                watch_for_leaks(conn, code, ordered_at).await?;
            }
            created.push(row);
        }
    }
    tracing::debug!(
        brand_id,
        store_order_id = order.store_order_id,
        conversions = created.len(),
        "order attributed"
    );
    events::conversion_changed(conn, &created).await?;
    Ok(true)
}

/// Attributes orders that were waiting for a code or click that has now arrived (their stored
/// order events, as `pending` handed them back).
pub async fn retry_pending(
    conn: &mut AsyncPgConnection,
    events: Vec<Vec<u8>>,
) -> Result<(), DbError> {
    for bytes in events {
        match OrderEvent::decode(bytes.as_slice()) {
            Ok(event) => apply_order(conn, &event).await?,
            Err(err) => tracing::error!(error = %err, "a pending order does not decode; dropped"),
        }
    }
    Ok(())
}

/// A known conversion after its order moved on.
async fn follow(
    conn: &mut AsyncPgConnection,
    row: ConversionRow,
    state: OrderState,
    refunded_minor: i64,
    seen_at: DateTime<Utc>,
    holding_days: i32,
) -> Result<ConversionRow, DbError> {
    let current = amounts_of(&row);
    let followed = attribution::follow(
        &current,
        state,
        refunded_minor,
        row.order_total_minor,
        row.base_revenue_minor,
        row.base_discount_minor,
        row.base_commission_minor,
        seen_at,
        holding_days,
    );
    let amounts = attribution::approve(&followed.amounts, seen_at).unwrap_or(followed.amounts);
    if let Some((revenue, commission)) = followed.adjustment {
        let reason = if state.is_void() {
            format!("order {} after approval", state.as_str())
        } else {
            "partial refund after approval".to_owned()
        };
        conversions::add_adjustment(conn, row.brand_id, row.id, revenue, commission, &reason)
            .await?;
    }
    let mut next = with_amounts(row.clone(), &amounts);
    next.order_status = state.as_str().to_owned();
    next.order_rank = state.rank();
    next.order_refunded_minor = refunded_minor;
    let next = conversions::update(conn, &next).await?;
    add_contribution(conn, Some(&row), &next).await?;
    Ok(next)
}

fn amounts_of(row: &ConversionRow) -> Amounts {
    Amounts {
        status: Status::parse(&row.status),
        revenue_minor: row.revenue_minor,
        discount_minor: row.discount_minor,
        commission_minor: row.commission_minor,
        adjusted_revenue_minor: row.adjusted_revenue_minor,
        adjusted_commission_minor: row.adjusted_commission_minor,
        approve_at: row.approve_at,
    }
}

fn with_amounts(mut row: ConversionRow, amounts: &Amounts) -> ConversionRow {
    row.status = amounts.status.as_str().to_owned();
    row.revenue_minor = amounts.revenue_minor;
    row.discount_minor = amounts.discount_minor;
    row.commission_minor = amounts.commission_minor;
    row.adjusted_revenue_minor = amounts.adjusted_revenue_minor;
    row.adjusted_commission_minor = amounts.adjusted_commission_minor;
    row.approve_at = amounts.approve_at;
    row
}

/// What a conversion adds to the daily figures, per currency (the commission may be in a fixed
/// commission's own currency).
fn contribution(row: &ConversionRow) -> Vec<(String, SalesDelta)> {
    let status = Status::parse(&row.status);
    let live = status != Status::Reversed;
    let sales = SalesDelta {
        orders: i64::from(live),
        code_uses: i64::from(live && row.method == Method::Code.as_str()),
        revenue_minor: row.revenue_minor + row.adjusted_revenue_minor,
        discount_minor: row.discount_minor,
        ..SalesDelta::default()
    };
    let commission = SalesDelta {
        pending_minor: if status == Status::Pending {
            row.commission_minor
        } else {
            0
        },
        approved_minor: if status == Status::Approved {
            row.commission_minor
        } else {
            0
        },
        reversed_minor: if status == Status::Reversed {
            row.commission_minor
        } else {
            0
        },
        adjusted_minor: row.adjusted_commission_minor,
        ..SalesDelta::default()
    };
    vec![
        (row.currency.clone(), sales),
        (row.commission_currency.clone(), commission),
    ]
}

/// Adds `new`'s contribution to the aggregates and takes `old`'s away.
async fn add_contribution(
    conn: &mut AsyncPgConnection,
    old: Option<&ConversionRow>,
    new: &ConversionRow,
) -> Result<(), DbError> {
    let mut by_currency: BTreeMap<String, SalesDelta> = BTreeMap::new();
    let mut add = |row: &ConversionRow, sign: i64| {
        for (currency, d) in contribution(row) {
            let total = by_currency.entry(currency).or_default();
            total.orders += sign * d.orders;
            total.code_uses += sign * d.code_uses;
            total.revenue_minor += sign * d.revenue_minor;
            total.discount_minor += sign * d.discount_minor;
            total.pending_minor += sign * d.pending_minor;
            total.approved_minor += sign * d.approved_minor;
            total.reversed_minor += sign * d.reversed_minor;
            total.adjusted_minor += sign * d.adjusted_minor;
        }
    };
    add(new, 1);
    if let Some(old) = old {
        add(old, -1);
    }
    let key = (new.brand_id, new.campaign_id, new.creator_id);
    let day = new.ordered_at.date_naive();
    for (currency, delta) in by_currency {
        conversions::add_sales(conn, key, day, &currency, &delta).await?;
    }
    Ok(())
}

/// Counts a code's order for leak detection and raises the alerts its figures call for.
async fn watch_for_leaks(
    conn: &mut AsyncPgConnection,
    code: &CodeRow,
    ordered_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let clicked = clicks::clicked_before(
        conn,
        code.brand_id,
        code.campaign_id,
        code.creator_id,
        ordered_at,
    )
    .await?;
    let day = ordered_at.date_naive();
    let counts = alert_store::count_order(
        conn,
        code.brand_id,
        code.code_id,
        day,
        !clicked,
        alerts::BASELINE_DAYS,
    )
    .await?;
    let alert = |kind: &str, evidence: String| AlertRow {
        brand_id: code.brand_id,
        code_id: code.code_id,
        kind: kind.to_owned(),
        campaign_id: code.campaign_id,
        creator_id: code.creator_id,
        code: code.code.clone(),
        evidence,
        orders: counts.orders,
        orders_without_click: counts.without_click,
        day: Some(day),
        day_orders: counts.day_orders,
        baseline_milli: alerts::baseline_milli(counts.baseline_orders),
        raised_at: Utc::now(),
        id: 0,
    };
    if let Some(evidence) = alerts::orders_without_clicks(counts.orders, counts.without_click) {
        alert_store::raise(conn, &alert("orders_without_clicks", evidence)).await?;
    }
    let baseline = alerts::baseline_milli(counts.baseline_orders);
    if let Some(evidence) = alerts::spike(&day.to_string(), counts.day_orders, baseline) {
        alert_store::raise(conn, &alert("spike", evidence)).await?;
    }
    Ok(())
}

/// Approves every conversion whose holding period is over (at most `limit`), in the caller's
/// transaction; returns how many.
pub async fn approve_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    let due = conversions::due(conn, now, limit).await?;
    let mut approved = Vec::with_capacity(due.len());
    for row in due {
        let Some(amounts) = attribution::approve(&amounts_of(&row), now) else {
            continue;
        };
        let next = conversions::update(conn, &with_amounts(row.clone(), &amounts)).await?;
        add_contribution(conn, Some(&row), &next).await?;
        approved.push(next);
    }
    events::conversion_changed(conn, &approved).await?;
    Ok(approved.len())
}
