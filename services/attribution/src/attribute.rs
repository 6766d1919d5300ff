//! Applying ProviderGateway's order events: attribution of new orders, following known ones
//! through payment, refunds and cancellation, approvals after the holding period, and the
//! aggregates and conversion events that go with every change. Runs inside the stream
//! consumer's transaction (or the approver's), so each change is applied exactly once.
//!
//! Events are applied a batch at a time, in three steps: [`Facts::load`] reads what the batch
//! may need (its orders' conversions and pending states, the codes, clicks, plans and campaigns
//! they refer to) in a few set-based queries; [`Batch::apply`] runs the rules of `domain` in
//! memory, event after event, so that several events of one order in one batch follow each other
//! exactly as if they had been applied one at a time; [`Changes::write`] writes the outcome
//! back with one multi-row statement per table.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::gateway::v1::{AmazonReportRow, Order, OrderEvent, OrderStatus};
use tracking_db::DbError;
use tracking_events::{Apply, BoxFuture};

use crate::convert::from_timestamp;
use crate::domain::alerts::{self, CodeHistory};
use crate::domain::attribution::{
    self, Amounts, Claimant, CommissionHistory, CommissionRule, Line, Method, OrderState,
    OrderVersion, Share, SplitRule, Status, Worth,
};
use crate::events;
use crate::store::alerts::{self as alert_store, AlertRow};
use crate::store::clicks::{self, ClickRow, CreatorLinks};
use crate::store::conversions::{
    self, Collided, ConversionRow, NewAdjustment, OrderKey, SalesDelta, SalesKey, Stored,
};
use crate::store::pending::{self, PendingOrder, Waited};
use crate::store::projection::{self, CodeRow, PlanRow};

/// The consumer of `WatchOrders`.
pub struct Orders;

impl Apply<OrderEvent> for Orders {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        _seq: i64,
        event: &'a OrderEvent,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(apply_events(conn, vec![event]))
    }

    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        events: &'a [(i64, OrderEvent)],
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(apply_events(conn, events.iter().map(|(_, e)| e).collect()))
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

/// The version of `order`, in `state`.
fn version_of(order: &Order, state: OrderState) -> OrderVersion {
    OrderVersion {
        rank: state.rank(),
        refunded_minor: order.refunded_minor,
        total_minor: order.total_minor,
        updated_at: order.updated_at.as_ref().and_then(from_timestamp),
    }
}

/// The version of its order a conversion was last brought to.
fn row_version(row: &ConversionRow) -> OrderVersion {
    OrderVersion {
        rank: store_rank(row),
        refunded_minor: row.order_refunded_minor,
        total_minor: row.order_total_minor,
        updated_at: row.order_updated_at,
    }
}

/// The rank of the state the store last gave a conversion's order: its `order_rank`, unless
/// the sale was [`taken_back`].
fn store_rank(row: &ConversionRow) -> i32 {
    OrderState::parse(&row.order_status).map_or(row.order_rank, OrderState::rank)
}

/// A sale [`reverse_collided`] took back: void (its `order_rank` a cancelled order's) whatever
/// its order does next, while its `order_status` still follows the store.
fn taken_back(row: &ConversionRow) -> bool {
    row.order_rank > store_rank(row)
}

/// An order event attribution acts on.
struct Item<'e> {
    event: &'e OrderEvent,
    order: &'e Order,
    state: OrderState,
    version: OrderVersion,
    key: OrderKey,
    seen_at: DateTime<Utc>,
    ordered_at: DateTime<Utc>,
    /// When the order was first seen paid, if an earlier state than this one waited for its
    /// code or click (a pending order keeps only its latest state).
    paid_at: Option<DateTime<Utc>>,
    /// The codes to look up: lower-cased, each once, none empty.
    lookup: Vec<String>,
}

impl<'e> Item<'e> {
    fn of(event: &'e OrderEvent) -> Option<Item<'e>> {
        let order = event.order.as_ref()?;
        let state = state_of(order)?;
        // Test orders are passed on by the gateway, and never attributed.
        if order.test {
            return None;
        }
        let seen_at = event
            .received_at
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or_else(Utc::now);
        let ordered_at = order
            .occurred_at
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(seen_at);
        Some(Item {
            event,
            order,
            state,
            version: version_of(order, state),
            key: (
                event.brand_id,
                order.integration_id,
                order.store_order_id.clone(),
            ),
            seen_at,
            ordered_at,
            paid_at: None,
            lookup: lookup_codes(order),
        })
    }

    fn brand_id(&self) -> i64 {
        self.key.0
    }

    /// Only an order with a code or a click id can wait for, or be found by, a code or click.
    fn matchable(&self) -> bool {
        !self.order.codes.is_empty() || !self.order.click_id.is_empty()
    }
}

/// An order's codes as a pending order keeps them: trimmed and lower-cased.
fn codes_lower(order: &Order) -> Vec<String> {
    order
        .codes
        .iter()
        .map(|c| c.trim().to_lowercase())
        .collect()
}

/// An order's codes to look up: lower-cased, each once, none empty.
fn lookup_codes(order: &Order) -> Vec<String> {
    let mut lower = codes_lower(order);
    lower.sort();
    lower.dedup();
    lower.retain(|c| !c.is_empty());
    lower
}

/// Amazon Attribution report rows share the stream (see `amazon_reports`). They never touch
/// orders' conversions, so they are applied apart from the batch's orders (first, under the
/// pricing lock, which a batch with report rows takes before the matching lock); their entries'
/// events are published last, with the orders'.
async fn apply_events(
    conn: &mut AsyncPgConnection,
    events: Vec<&OrderEvent>,
) -> Result<(), DbError> {
    let rows: Vec<(i64, &AmazonReportRow)> = events
        .iter()
        .filter_map(|event| Some((event.brand_id, event.report_row.as_ref()?)))
        .collect();
    let reported = crate::amazon_reports::apply_rows(conn, &rows).await?;
    apply_orders(conn, events.into_iter().filter_map(Item::of).collect()).await?;
    events::report_sales_changed(conn, &reported).await
}

async fn apply_orders(conn: &mut AsyncPgConnection, items: Vec<Item<'_>>) -> Result<(), DbError> {
    if items.is_empty() {
        return Ok(());
    }
    // Every batch that may read or write waiting orders (a later state of a waiting order may
    // carry no code or click of its own) serializes with the codes and clicks that free them.
    pending::lock_matching(conn).await?;
    let mut keys: Vec<OrderKey> = items.iter().map(|i| i.key.clone()).collect();
    keys.sort();
    keys.dedup();
    let existing = conversions::of_orders(conn, &keys).await?;
    let waiting = pending::get(conn, &keys).await?;
    let facts = Facts::load(conn, &items, &existing).await?;
    let mut batch = Batch::new(&facts, existing, waiting);
    for item in &items {
        batch.apply(item);
    }
    batch.changes.write(conn).await
}

/// Attributes orders that were waiting for a code or click that has now arrived (as `pending`
/// handed them back).
pub async fn retry_pending(
    conn: &mut AsyncPgConnection,
    waited: Vec<Waited>,
) -> Result<(), DbError> {
    let decoded: Vec<(OrderEvent, Option<DateTime<Utc>>)> = waited
        .into_iter()
        .filter_map(|w| match OrderEvent::decode(w.event.as_slice()) {
            Ok(event) => Some((event, w.paid_at)),
            Err(err) => {
                tracing::error!(error = %err, "a pending order does not decode; dropped");
                None
            }
        })
        .collect();
    let items = decoded
        .iter()
        .filter_map(|(event, paid_at)| {
            Some(Item {
                paid_at: *paid_at,
                ..Item::of(event)?
            })
        })
        .collect();
    apply_orders(conn, items).await
}

/// What a batch reads besides its orders' own rows. None of it changes while the batch is
/// applied: codes and clicks are written under the matching lock, which a batch with orders that
/// look them up holds; plans and campaigns come from the plan stream's consumer, and the batch
/// sees them as of its start.
#[derive(Default)]
struct Facts {
    /// By (brand, integration), then by lower-cased code: the codes with that text now (`None`)
    /// or until a rename (`Some(until)`).
    codes: HashMap<(i64, i64), HashMap<String, Holders>>,
    /// The codes of the batch's clicks, by (brand, code id).
    click_codes: HashMap<(i64, i64), CodeRow>,
    /// By (brand, click id).
    clicks: HashMap<(i64, String), ClickRow>,
    /// By (brand, plan id).
    plans: HashMap<(i64, i64), PlanRow>,
    /// Each plan's campaigns, by campaign id.
    campaigns: HashMap<(i64, i64), Vec<i64>>,
    /// Each plan's commission over time, oldest first, by (brand, plan id).
    commissions: HashMap<(i64, i64), CommissionHistory>,
}

/// The codes that hold, or held until a rename, one text: each with until when (`None`: holds
/// it now) and since when (`None`: not known) it held it.
type Holders = Vec<(CodeRow, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>;

impl Facts {
    async fn load(
        conn: &mut AsyncPgConnection,
        items: &[Item<'_>],
        existing: &[ConversionRow],
    ) -> Result<Facts, DbError> {
        let mut facts = Facts::default();
        // Each (brand, integration, code) once: a batch's orders share few codes.
        let wanted = distinct(items.iter().flat_map(|i| {
            i.lookup
                .iter()
                .map(move |c| (i.brand_id(), i.order.integration_id, c.as_str()))
        }));
        for found in projection::codes_matching(conn, &wanted).await? {
            facts
                .codes
                .entry((found.code.brand_id, found.code.integration_id))
                .or_default()
                .entry(found.matched)
                .or_default()
                .push((found.code, found.valid_until, found.valid_from));
        }
        let mut click_ids: Vec<(i64, &str)> = items
            .iter()
            .filter(|i| !i.order.click_id.is_empty())
            .map(|i| (i.brand_id(), i.order.click_id.as_str()))
            .collect();
        click_ids.sort_unstable();
        click_ids.dedup();
        for click in clicks::by_ids(conn, &click_ids).await? {
            facts
                .clicks
                .insert((click.brand_id, click.click_id.clone()), click);
        }
        let code_ids = distinct(facts.clicks.values().map(|c| (c.brand_id, c.code_id)));
        for code in projection::codes(conn, &code_ids).await? {
            facts
                .click_codes
                .insert((code.brand_id, code.code_id), code);
        }
        let found_codes = || {
            facts
                .codes
                .values()
                .flat_map(|by_code| by_code.values().flatten().map(|(code, _, _)| code))
                .chain(facts.click_codes.values())
        };
        let code_plans = distinct(found_codes().map(|c| (c.brand_id, c.plan_id)));
        let plan_ids = distinct(
            code_plans
                .iter()
                .copied()
                .chain(existing.iter().map(|r| (r.brand_id, r.plan_id)))
                .chain(facts.clicks.values().map(|c| (c.brand_id, c.plan_id))),
        );
        for plan in projection::plans(conn, &plan_ids).await? {
            facts.plans.insert((plan.brand_id, plan.plan_id), plan);
        }
        // The plans of the orders' conversions too: an edit of an order prices it again.
        let priced_plans = distinct(
            code_plans
                .iter()
                .copied()
                .chain(existing.iter().map(|r| (r.brand_id, r.plan_id))),
        );
        facts.commissions = projection::commission_histories(conn, &priced_plans).await?;
        for link in projection::campaigns_of_plans(conn, &code_plans).await? {
            facts
                .campaigns
                .entry((link.brand_id, link.plan_id))
                .or_default()
                .push(link.campaign_id);
        }
        Ok(facts)
    }

    fn plan(&self, brand_id: i64, plan_id: i64) -> Option<&PlanRow> {
        self.plans.get(&(brand_id, plan_id))
    }

    /// The plan's commission for an order placed at `ordered_at`.
    fn commission_at(
        &self,
        brand_id: i64,
        plan_id: i64,
        ordered_at: DateTime<Utc>,
    ) -> Option<&CommissionRule> {
        let history = self.commissions.get(&(brand_id, plan_id))?;
        attribution::rule_in_effect(history, ordered_at)
    }

    /// The integration's codes among `lower` as they were when the order was placed, each with
    /// the text it matched, by creator id then code id.
    fn codes_matching<'s>(
        &'s self,
        brand_id: i64,
        integration_id: i64,
        lower: &[String],
        ordered_at: DateTime<Utc>,
    ) -> Vec<(&'s CodeRow, &'s str)> {
        let Some(by_code) = self.codes.get(&(brand_id, integration_id)) else {
            return Vec::new();
        };
        let mut found: Vec<(&CodeRow, &str)> = lower
            .iter()
            .filter_map(|text| by_code.get_key_value(text))
            .flat_map(|(text, holders)| {
                // A holder counts from when it had the text at the store.
                let held: Vec<(&CodeRow, Option<DateTime<Utc>>)> = holders
                    .iter()
                    .filter(|(_, _, since)| attribution::had_text_then(*since, ordered_at))
                    .map(|(code, until, _)| (code, *until))
                    .collect();
                attribution::holders_at(&held, ordered_at)
                    .into_iter()
                    .map(move |code| (code, text.as_str()))
            })
            .collect();
        found.sort_by_key(|(c, _)| (c.creator_id, c.code_id));
        found.dedup_by_key(|(c, _)| (c.brand_id, c.code_id));
        found
    }
}

fn distinct<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.sort_unstable();
    items.dedup();
    items
}

/// One batch of order events, applied in memory.
struct Batch<'f> {
    facts: &'f Facts,
    /// The conversions of each order (indexes into `changes.rows`), oldest first.
    orders: HashMap<OrderKey, Vec<usize>>,
    /// The orders waiting for a code or click, as they stand at this point of the batch.
    waiting: HashMap<OrderKey, PendingOrder>,
    changes: Changes<'f>,
}

impl<'f> Batch<'f> {
    fn new(
        facts: &'f Facts,
        existing: Vec<ConversionRow>,
        waiting: Vec<(OrderKey, PendingOrder)>,
    ) -> Batch<'f> {
        let mut batch = Batch {
            facts,
            orders: HashMap::new(),
            waiting: waiting.into_iter().collect(),
            changes: Changes::default(),
        };
        for row in existing {
            let key = (row.brand_id, row.integration_id, row.store_order_id.clone());
            let index = batch.changes.track(row);
            batch.orders.entry(key).or_default().push(index);
        }
        batch
    }

    fn apply(&mut self, item: &Item) {
        let known = self.orders.get(&item.key).cloned().unwrap_or_default();
        if !known.is_empty() {
            self.follow(&known, item);
            return;
        }
        let waited = self.waiting.get(&item.key);
        let kept_order = waited
            .and_then(|kept| OrderEvent::decode(kept.event.as_slice()).ok())
            .and_then(|e| e.order);
        if let Some(kept) = &kept_order
            && let Some(kept_state) = state_of(kept)
            && !attribution::is_newer(&version_of(kept, kept_state), &item.version)
        {
            // A later state of this order is already waiting for its code or click.
            return;
        }
        // Its approval is due from when it was first seen paid, which an earlier state that
        // waited may have been.
        let paid_at = item
            .paid_at
            .or(waited.and_then(|w| w.paid_at))
            .or_else(|| item.state.is_paid().then_some(item.seen_at));
        // A later state that names no code or click (a cancellation sent with the order id
        // alone) waits in the earlier state's place, with what the earlier one was waiting for:
        // dropped, the earlier state would be attributed when its code or click arrived.
        if !item.matchable()
            && let Some(kept) =
                kept_order.filter(|kept| !kept.codes.is_empty() || !kept.click_id.is_empty())
        {
            let mut later = item.event.clone();
            if let Some(order) = later.order.as_mut() {
                order.codes = kept.codes.clone();
                order.click_id = kept.click_id.clone();
            }
            let pending = PendingOrder {
                event: later.encode_to_vec(),
                paid_at,
                codes_lower: codes_lower(&kept),
                click_id: kept.click_id.clone(),
            };
            self.set_waiting(&item.key, Some(pending));
            return;
        }
        // A state seen first already void (cancelled or refunded: its earlier states arrive
        // late, or never) is attributed as well, reversed at once, or kept waiting: the order
        // then stands on record at its latest state, and a late older state changes nothing.
        if self.attribute(item, paid_at) {
            self.set_waiting(&item.key, None);
        } else if item.matchable() {
            // Its code or click may not be known yet (the streams are consumed independently):
            // it is attributed when they arrive.
            let kept = PendingOrder {
                event: item.event.encode_to_vec(),
                paid_at,
                codes_lower: codes_lower(item.order),
                click_id: item.order.click_id.clone(),
            };
            self.set_waiting(&item.key, Some(kept));
        }
    }

    fn set_waiting(&mut self, key: &OrderKey, pending: Option<PendingOrder>) {
        let was_waiting = match &pending {
            Some(kept) => self.waiting.insert(key.clone(), kept.clone()).is_some(),
            None => self.waiting.remove(key).is_some(),
        };
        // An order that was not waiting (stored or earlier in the batch) and is not kept now
        // has nothing to write: most orders are attributed at once.
        if was_waiting || pending.is_some() {
            self.changes.pending.insert(key.clone(), pending);
        }
    }

    /// The creators an order belongs to: by its codes (case-insensitively, within its
    /// integration), else by its click id within the plan's window. Sorted by creator id. A
    /// creator's codes of two plans (two campaigns) on one order claim for each; of one plan
    /// (shared by campaigns, which each record the sale), once.
    fn claimants(&self, item: &Item) -> (Method, Vec<(Claimant, &'f CodeRow, String)>) {
        let order = item.order;
        let brand_id = item.brand_id();
        let lower = &item.lookup;
        if !lower.is_empty() {
            let mut by_creator: BTreeMap<(i64, i64), (Claimant, &'f CodeRow, String)> =
                BTreeMap::new();
            for (code, matched) in
                self.facts
                    .codes_matching(brand_id, order.integration_id, lower, item.ordered_at)
            {
                let as_on_order = order
                    .codes
                    .iter()
                    .find(|c| c.trim().eq_ignore_ascii_case(matched))
                    .cloned()
                    .unwrap_or_else(|| code.code.clone());
                by_creator
                    .entry((code.creator_id, code.plan_id))
                    .or_insert((
                        Claimant {
                            creator_id: code.creator_id,
                            code: matched.to_owned(),
                        },
                        code,
                        as_on_order,
                    ));
            }
            if !by_creator.is_empty() {
                return (Method::Code, by_creator.into_values().collect());
            }
        }
        if !order.click_id.is_empty()
            && let Some(click) = self.facts.clicks.get(&(brand_id, order.click_id.clone()))
            && click.integration_id == order.integration_id
            && let Some(code) = self.facts.click_codes.get(&(brand_id, click.code_id))
        {
            let window = self
                .facts
                .plan(brand_id, click.plan_id)
                .map_or(30, |p| p.attribution_window_days);
            if attribution::click_in_window(click.clicked_at, item.ordered_at, window) {
                let claimant = Claimant {
                    creator_id: click.creator_id,
                    code: String::new(),
                };
                return (
                    Method::Click,
                    vec![(claimant, code, order.click_id.clone())],
                );
            }
        }
        (Method::Code, Vec::new())
    }

    /// Attributes a new order (first seen paid at `paid_at`); whether anyone was credited.
    fn attribute(&mut self, item: &Item, paid_at: Option<DateTime<Utc>>) -> bool {
        let order = item.order;
        let brand_id = item.brand_id();
        let (method, claimants) = self.claimants(item);
        if claimants.is_empty() {
            return false;
        }
        // Plans come on a stream of their own, which may be behind: priced and approved without
        // its plan, an order would stay wrong. It waits for the plan, as for an unknown code
        // (`projection::Plans` retries it when the plan arrives).
        if claimants
            .iter()
            .any(|(_, code, _)| self.facts.plan(brand_id, code.plan_id).is_none())
        {
            return false;
        }
        let who: Vec<(Claimant, i64)> = claimants
            .iter()
            .map(|(claimant, code, _)| (claimant.clone(), code.plan_id))
            .collect();
        let (rule, shares, bases) = self.priced(item, &who);
        let worth = attribution::worth(&bases, item.state, order.refunded_minor, order.total_minor);
        let mut created = 0;
        // A sale is recorded once per campaign and creator, whichever of their codes claims it
        // (kept only for orders with several claimants: one claims each campaign once).
        let several = claimants.len() > 1;
        let mut recorded: Vec<(i64, i64)> = Vec::new();
        for ((((_, code, matched), share), base), worth) in
            claimants.iter().zip(&shares).zip(&bases).zip(&worth)
        {
            let commission = base.commission_minor;
            let plan = self.facts.plan(brand_id, code.plan_id);
            // A plan shared by several campaigns records the sale in each of them.
            let mut campaigns = self
                .facts
                .campaigns
                .get(&(brand_id, code.plan_id))
                .cloned()
                .unwrap_or_default();
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
            let holding = plan.map_or(0, |p| p.holding_period_days);
            let followed = attribution::follow(
                &pending,
                item.state,
                worth,
                paid_at.unwrap_or(item.seen_at),
                holding,
            );
            let amounts =
                attribution::approve(&followed.amounts, item.seen_at).unwrap_or(followed.amounts);
            for campaign_id in campaigns {
                if several {
                    if recorded.contains(&(campaign_id, code.creator_id)) {
                        continue;
                    }
                    recorded.push((campaign_id, code.creator_id));
                }
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
                    order_status: item.state.as_str().to_owned(),
                    order_rank: item.state.rank(),
                    currency: order.currency.clone(),
                    order_total_minor: order.total_minor,
                    order_refunded_minor: order.refunded_minor,
                    base_revenue_minor: share.revenue_minor,
                    base_discount_minor: share.discount_minor,
                    base_commission_minor: commission,
                    revenue_minor: amounts.revenue_minor,
                    discount_minor: amounts.discount_minor,
                    commission_minor: amounts.commission_minor,
                    commission_currency: base.commission_currency.clone(),
                    adjusted_revenue_minor: 0,
                    adjusted_commission_minor: 0,
                    ordered_at: item.ordered_at,
                    approve_at: amounts.approve_at,
                    // Both set by the database when the row is written.
                    created_at: item.seen_at,
                    updated_at: item.seen_at,
                    order_updated_at: item.version.updated_at,
                };
                let index = self.changes.create(row);
                self.orders.entry(item.key.clone()).or_default().push(index);
                if method == Method::Code && campaign_id == code.campaign_id {
                    self.changes.leaks.push((code, item.ordered_at));
                }
                created += 1;
            }
        }
        tracing::debug!(
            brand_id,
            store_order_id = order.store_order_id,
            conversions = created,
            "order attributed"
        );
        true
    }

    /// What each of `who` (sorted by creator id, each with the plan whose commission it earns)
    /// is owed of the order before any refund: the split's rule, their shares, and their worth.
    fn priced(&self, item: &Item, who: &[(Claimant, i64)]) -> (SplitRule, Vec<Share>, Vec<Worth>) {
        let order = item.order;
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
        let claimants: Vec<Claimant> = who.iter().map(|(claimant, _)| claimant.clone()).collect();
        let (rule, shares) = attribution::split(net, order.discount_minor, &lines, &claimants);
        let in_effect: Vec<_> = who
            .iter()
            .map(|(_, plan_id)| {
                self.facts
                    .commission_at(item.brand_id(), *plan_id, item.ordered_at)
            })
            .collect();
        let bases = attribution::commissions(&in_effect, &shares, net, &order.currency)
            .into_iter()
            .zip(&shares)
            .map(|((commission, currency), share)| Worth {
                revenue_minor: share.revenue_minor,
                discount_minor: share.discount_minor,
                commission_minor: commission,
                commission_currency: currency,
            })
            .collect();
        (rule, shares, bases)
    }

    /// An order's known conversions (`known`, indexes into the changes), if it moved on.
    fn follow(&mut self, known: &[usize], item: &Item) {
        // Each claimant's worth at the new state, as the order was divided among them: in the
        // order they claimed it (creator, then plan: see `claimants`), once per claimant also
        // when a shared plan records them in several campaigns.
        let mut creators: Vec<&ConversionRow> = known
            .iter()
            .map(|&index| &self.changes.rows[index].row)
            .collect();
        creators.sort_by_key(|row| (row.creator_id, row.plan_id));
        creators.dedup_by_key(|row| (row.creator_id, row.plan_id));
        let Some(first) = creators.first() else {
            return;
        };
        let keys: Vec<(i64, i64)> = creators
            .iter()
            .map(|row| (row.creator_id, row.plan_id))
            .collect();
        let plans_known = creators
            .iter()
            .all(|row| self.facts.plan(row.brand_id, row.plan_id).is_some());
        // A state in another currency than the order was priced in (an AST conversion reported
        // by the pixel in one and the brand's server in another, an `IngestOrders` correction)
        // prices the order again in it, while nothing of it is approved: an approved commission
        // is not adjusted across currencies, so such a state is left out (logged).
        // (Compared with a conversion still owed: one taken back keeps the currency it had.) A
        // cancellation or full refund owes nothing in any currency: it is followed on the
        // amounts as priced.
        let priced_in = creators
            .iter()
            .find(|row| !taken_back(row))
            .map_or(&first.currency, |row| &row.currency);
        let other_currency = item.order.currency != *priced_in;
        let currency_changed = other_currency && !item.state.is_void();
        if currency_changed
            && (!plans_known
                || creators
                    .iter()
                    .any(|row| Status::parse(&row.status) == Status::Approved))
        {
            tracing::warn!(
                brand_id = first.brand_id,
                store_order_id = %first.store_order_id,
                priced_in = %first.currency,
                currency = %item.order.currency,
                "order state in another currency than its approved conversions: not followed"
            );
            return;
        }
        // An edit of the order's total divides and prices it again among the same creators, as
        // it would have been had the order come so (their plans known, as when it was
        // attributed); otherwise their worth is what it was priced at.
        let repriced = (((attribution::reprices(&row_version(first), &item.version)
            && !other_currency)
            || currency_changed)
            && plans_known)
            .then(|| {
                let who: Vec<(Claimant, i64)> = creators
                    .iter()
                    .map(|row| {
                        let code = if row.method == Method::Code.as_str() {
                            row.matched.trim().to_lowercase()
                        } else {
                            String::new()
                        };
                        let claimant = Claimant {
                            creator_id: row.creator_id,
                            code,
                        };
                        (claimant, row.plan_id)
                    })
                    .collect();
                self.priced(item, &who)
            });
        let (bases, total) = match &repriced {
            Some((_, _, bases)) => (bases.clone(), item.order.total_minor),
            None => (
                creators
                    .iter()
                    .map(|row| Worth {
                        revenue_minor: row.base_revenue_minor,
                        discount_minor: row.base_discount_minor,
                        commission_minor: row.base_commission_minor,
                        commission_currency: row.commission_currency.clone(),
                    })
                    .collect(),
                first.order_total_minor,
            ),
        };
        let worth: HashMap<(i64, i64), Worth> = keys
            .iter()
            .copied()
            .zip(attribution::worth(
                &bases,
                item.state,
                item.order.refunded_minor,
                total,
            ))
            .collect();
        let prices: HashMap<(i64, i64), Priced> = match repriced {
            Some((rule, shares, bases)) => keys
                .iter()
                .copied()
                .zip(shares.into_iter().zip(bases))
                .map(|(key, (share, base))| (key, Priced { rule, share, base }))
                .collect(),
            None => HashMap::new(),
        };
        for &index in known {
            let row = &self.changes.rows[index].row;
            let key = (row.creator_id, row.plan_id);
            if let Some(worth) = worth.get(&key) {
                self.follow_one(index, item, worth, prices.get(&key));
            }
        }
    }

    /// A known conversion worth `worth` at its order's new state, if it moved on; `priced` when
    /// an edit of the order priced its share again.
    fn follow_one(&mut self, index: usize, item: &Item, worth: &Worth, priced: Option<&Priced>) {
        let row = &self.changes.rows[index].row;
        if !attribution::is_newer(&row_version(row), &item.version) {
            return;
        }
        if taken_back(row) {
            // Nothing is owed again: only the order's new state is shown.
            let mut next = row.clone();
            next.order_status = item.state.as_str().to_owned();
            next.order_refunded_minor = item.order.refunded_minor;
            next.order_total_minor = item.order.total_minor;
            next.order_updated_at = row.order_updated_at.max(item.version.updated_at);
            self.changes.update(index, next);
            return;
        }
        let holding = self
            .facts
            .plan(row.brand_id, row.plan_id)
            .map_or(0, |p| p.holding_period_days);
        let followed =
            attribution::follow(&amounts_of(row), item.state, worth, item.seen_at, holding);
        let amounts =
            attribution::approve(&followed.amounts, item.seen_at).unwrap_or(followed.amounts);
        if let Some((revenue_minor, commission_minor)) = followed.adjustment {
            let reason = if item.state.is_void() {
                format!("order {} after approval", item.state.as_str())
            } else if item.order.refunded_minor > row.order_refunded_minor {
                "partial refund after approval".to_owned()
            } else {
                "order edited after approval".to_owned()
            };
            self.changes.adjustments.push((
                index,
                NewAdjustment {
                    brand_id: row.brand_id,
                    conversion_id: row.id,
                    revenue_minor,
                    commission_minor,
                    reason,
                },
            ));
        }
        let mut next = with_amounts(row.clone(), &amounts);
        next.order_status = item.state.as_str().to_owned();
        next.order_rank = item.state.rank();
        next.order_refunded_minor = item.order.refunded_minor;
        next.order_updated_at = row.order_updated_at.max(item.version.updated_at);
        if let Some(priced) = priced {
            next.currency = item.order.currency.clone();
            next.order_total_minor = item.order.total_minor;
            next.split_rule = priced.rule.as_str().to_owned();
            next.share_bps = priced.share.share_bps;
            next.base_revenue_minor = priced.share.revenue_minor;
            next.base_discount_minor = priced.share.discount_minor;
            next.base_commission_minor = priced.base.commission_minor;
            next.commission_currency = priced.base.commission_currency.clone();
        }
        self.changes.update(index, next);
    }
}

/// A creator's share of an order priced again after an edit of its total.
struct Priced {
    rule: SplitRule,
    share: Share,
    base: Worth,
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
    // An order cancelled or refunded in full is no order, also after its commission was
    // approved (the conversion stays approved, the adjustment takes the commission back).
    let void = row.order_rank >= OrderState::Cancelled.rank();
    let live = status != Status::Reversed && !void;
    let sales = SalesDelta {
        orders: i64::from(live),
        code_uses: i64::from(live && row.method == Method::Code.as_str()),
        revenue_minor: row.revenue_minor + row.adjusted_revenue_minor,
        discount_minor: if live { row.discount_minor } else { 0 },
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

/// Adds `new`'s contribution to the daily figures and takes `old`'s away.
fn add_contribution(
    sales: &mut BTreeMap<SalesKey, SalesDelta>,
    old: Option<&ConversionRow>,
    new: &ConversionRow,
) {
    let mut by_currency: BTreeMap<String, SalesDelta> = BTreeMap::new();
    for (currency, d) in contribution(new) {
        by_currency.entry(currency).or_default().add(&d, 1);
    }
    for (currency, d) in old.map(contribution).unwrap_or_default() {
        by_currency.entry(currency).or_default().add(&d, -1);
    }
    let day = new.ordered_at.date_naive();
    for (currency, delta) in by_currency {
        if delta.is_zero() {
            continue;
        }
        let key = (new.brand_id, new.campaign_id, new.creator_id, day, currency);
        sales.entry(key).or_default().add(&delta, 1);
    }
}

/// A conversion of the batch.
struct Tracked {
    row: ConversionRow,
    /// Created by this batch (not stored yet).
    new: bool,
    changed: bool,
    /// Its latest event (an index into `Changes::events`).
    last_event: Option<usize>,
}

/// What applying a batch changes, in the order it happened, written back by [`Changes::write`].
#[derive(Default)]
struct Changes<'f> {
    rows: Vec<Tracked>,
    /// Conversion events: the conversion (an index into `rows`) as it was at that point, when
    /// it changed again later in the batch (`None`: as it ends the batch).
    events: Vec<(usize, Option<ConversionRow>)>,
    /// Adjustments after approval, each with its conversion (an index into `rows`).
    adjustments: Vec<(usize, NewAdjustment)>,
    /// Summed changes to the daily figures; a day touched by any change is written, even if
    /// its changes cancel out, as it would be one change at a time.
    sales: BTreeMap<SalesKey, SalesDelta>,
    /// Orders counted for leak detection: the code and when the order was placed.
    leaks: Vec<(&'f CodeRow, DateTime<Utc>)>,
    /// The final state of every pending order the batch kept (`Some`) or let go (`None`).
    pending: BTreeMap<OrderKey, Option<PendingOrder>>,
}

impl Changes<'_> {
    /// A stored conversion the batch may change.
    fn track(&mut self, row: ConversionRow) -> usize {
        self.rows.push(Tracked {
            row,
            new: false,
            changed: false,
            last_event: None,
        });
        self.rows.len() - 1
    }

    fn create(&mut self, row: ConversionRow) -> usize {
        add_contribution(&mut self.sales, None, &row);
        let index = self.rows.len();
        self.rows.push(Tracked {
            row,
            new: true,
            changed: true,
            last_event: Some(self.events.len()),
        });
        self.events.push((index, None));
        index
    }

    fn update(&mut self, index: usize, next: ConversionRow) {
        add_contribution(&mut self.sales, Some(&self.rows[index].row), &next);
        let tracked = &mut self.rows[index];
        let old = std::mem::replace(&mut tracked.row, next);
        tracked.changed = true;
        // The row's previous event showed it as it was before this change.
        if let Some(event) = tracked.last_event.replace(self.events.len()) {
            self.events[event].1.get_or_insert(old);
        }
        self.events.push((index, None));
    }

    async fn write(mut self, conn: &mut AsyncPgConnection) -> Result<(), DbError> {
        self.write_conversions(conn).await?;
        let adjustments: Vec<NewAdjustment> = self
            .adjustments
            .into_iter()
            .map(|(index, adjustment)| NewAdjustment {
                conversion_id: self.rows[index].row.id,
                ..adjustment
            })
            .collect();
        conversions::add_adjustments(conn, &adjustments).await?;
        conversions::add_sales(conn, &self.sales).await?;
        watch_for_leaks(conn, &self.leaks).await?;
        let (kept, dropped): (Vec<_>, Vec<_>) = self
            .pending
            .iter()
            .partition(|(_, pending)| pending.is_some());
        let kept: Vec<(&OrderKey, &PendingOrder)> = kept
            .into_iter()
            .filter_map(|(key, pending)| Some((key, pending.as_ref()?)))
            .collect();
        let dropped: Vec<&OrderKey> = dropped.into_iter().map(|(key, _)| key).collect();
        pending::keep(conn, &kept).await?;
        pending::drop(conn, &dropped).await?;
        // Each event carries the row as it was then, with the identity and times it was stored
        // with (every write of a transaction is stamped with the same `now()`).
        for (index, snapshot) in &mut self.events {
            if let Some(snapshot) = snapshot {
                let stored = &self.rows[*index].row;
                snapshot.id = stored.id;
                snapshot.created_at = stored.created_at;
                snapshot.updated_at = stored.updated_at;
            }
        }
        let changed: Vec<&ConversionRow> = self
            .events
            .iter()
            .map(|(index, snapshot)| snapshot.as_ref().unwrap_or(&self.rows[*index].row))
            .collect();
        events::conversion_changed(conn, &changed).await
    }

    /// Inserts the new conversions (ids in the order they were created) and updates the changed
    /// ones; each row takes the id and times it was stored with.
    async fn write_conversions(&mut self, conn: &mut AsyncPgConnection) -> Result<(), DbError> {
        let created: Vec<&ConversionRow> =
            self.rows.iter().filter(|t| t.new).map(|t| &t.row).collect();
        let mut inserted: HashMap<(i64, i64, String, i64, i64), Stored> =
            conversions::insert(conn, &created)
                .await?
                .into_iter()
                .map(|s| {
                    let key = (
                        s.brand_id,
                        s.integration_id,
                        s.store_order_id.clone(),
                        s.campaign_id,
                        s.creator_id,
                    );
                    (key, s)
                })
                .collect();
        let changed: Vec<&ConversionRow> = self
            .rows
            .iter()
            .filter(|t| !t.new && t.changed)
            .map(|t| &t.row)
            .collect();
        let mut updated: HashMap<(i64, i64), Stored> = conversions::update(conn, &changed)
            .await?
            .into_iter()
            .map(|s| ((s.brand_id, s.id), s))
            .collect();
        for tracked in &mut self.rows {
            let row = &mut tracked.row;
            let stored = if tracked.new {
                let key = (
                    row.brand_id,
                    row.integration_id,
                    row.store_order_id.clone(),
                    row.campaign_id,
                    row.creator_id,
                );
                inserted.remove(&key)
            } else if tracked.changed {
                updated.remove(&(row.brand_id, row.id))
            } else {
                continue;
            };
            // Only another writer of the same orders could cause this (the stream has one
            // consumer): the batch is rolled back and applied again.
            let stored = stored.ok_or_else(|| {
                DbError::Other(format!(
                    "conversion of order {} changed by another transaction during the batch",
                    row.store_order_id
                ))
            })?;
            row.id = stored.id;
            row.created_at = stored.created_at;
            row.updated_at = stored.updated_at;
        }
        Ok(())
    }
}

/// For each (links, at): whether the creator's links in the campaign were clicked in the
/// lookback before `at`. One answer per question, in order. A batch asks about
/// many orders of few creators, so the creator's latest click before their last order of the
/// batch answers every order placed after that click (one probe per creator); only an order
/// placed before it (a click between two of the creator's orders) is asked about on its own.
async fn clicked_before(
    conn: &mut AsyncPgConnection,
    questions: &[(CreatorLinks, DateTime<Utc>)],
) -> Result<Vec<bool>, DbError> {
    let mut last_orders: BTreeMap<CreatorLinks, DateTime<Utc>> = BTreeMap::new();
    for &(links, at) in questions {
        let last = last_orders.entry(links).or_insert(at);
        *last = (*last).max(at);
    }
    let creators: Vec<(CreatorLinks, DateTime<Utc>)> = last_orders.into_iter().collect();
    let found = clicks::latest_clicks(conn, &creators).await?;
    let latest: BTreeMap<CreatorLinks, Option<DateTime<Utc>>> = creators
        .iter()
        .map(|(links, _)| *links)
        .zip(found)
        .collect();
    let mut answers: Vec<Option<bool>> = questions
        .iter()
        .map(|&(links, at)| alerts::clicked_from_latest(latest[&links], at))
        .collect();
    let open: Vec<usize> = (0..questions.len())
        .filter(|&i| answers[i].is_none())
        .collect();
    let asked: Vec<(CreatorLinks, DateTime<Utc>, DateTime<Utc>)> = open
        .iter()
        .map(|&i| {
            let (links, at) = questions[i];
            (links, at - alerts::CLICK_LOOKBACK, at)
        })
        .collect();
    for (i, found) in open
        .into_iter()
        .zip(clicks::clicked_between(conn, &asked).await?)
    {
        answers[i] = Some(found);
    }
    Ok(answers.into_iter().map(|a| a.unwrap_or(false)).collect())
}

/// Counts codes' orders for leak detection, one after the other as they were attributed, and
/// raises the alerts their figures call for.
async fn watch_for_leaks(
    conn: &mut AsyncPgConnection,
    leaks: &[(&CodeRow, DateTime<Utc>)],
) -> Result<(), DbError> {
    if leaks.is_empty() {
        return Ok(());
    }
    let questions: Vec<(CreatorLinks, DateTime<Utc>)> = leaks
        .iter()
        .map(|(code, at)| ((code.brand_id, code.campaign_id, code.creator_id), *at))
        .collect();
    let clicked = clicked_before(conn, &questions).await?;
    // Each code's totals, and its days from the earliest baseline to the latest order.
    let mut ranges: BTreeMap<(i64, i64), (NaiveDate, NaiveDate)> = BTreeMap::new();
    for (code, at) in leaks {
        let day = at.date_naive();
        let first = alerts::baseline_start(day);
        let range = ranges
            .entry((code.brand_id, code.code_id))
            .or_insert((first, day));
        range.0 = range.0.min(first);
        range.1 = range.1.max(day);
    }
    let ranges: Vec<(i64, i64, NaiveDate, NaiveDate)> = ranges
        .into_iter()
        .map(|((brand, code), (first, last))| (brand, code, first, last))
        .collect();
    let mut history: HashMap<(i64, i64), CodeHistory> = HashMap::new();
    for count in alert_store::code_counts(conn, &ranges).await? {
        let code = history.entry((count.brand_id, count.code_id)).or_default();
        match count.day {
            None => code.set_totals(count.orders, count.without_click),
            Some(day) => code.set_day(day, count.orders),
        }
    }
    let mut counted: BTreeMap<(i64, i64, NaiveDate), (i64, i64)> = BTreeMap::new();
    // At most one alert per (brand, code, kind): the latest evidence, in the order first raised.
    let mut raised: Vec<AlertRow> = Vec::new();
    let mut position: HashMap<(i64, i64, &'static str), usize> = HashMap::new();
    for ((code, at), clicked) in leaks.iter().zip(clicked) {
        let day = at.date_naive();
        let counts = history
            .entry((code.brand_id, code.code_id))
            .or_default()
            .count(day, !clicked);
        let added = counted
            .entry((code.brand_id, code.code_id, day))
            .or_default();
        added.0 += 1;
        added.1 += i64::from(!clicked);
        let baseline = alerts::baseline_milli(counts.baseline_orders);
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
            baseline_milli: baseline,
            raised_at: Utc::now(),
            id: 0,
        };
        let mut raise = |kind: &'static str, evidence: String| {
            let row = alert(kind, evidence);
            match position.get(&(code.brand_id, code.code_id, kind)) {
                Some(&at) => raised[at] = row,
                None => {
                    position.insert((code.brand_id, code.code_id, kind), raised.len());
                    raised.push(row);
                }
            }
        };
        if let Some(evidence) = alerts::orders_without_clicks(counts.orders, counts.without_click) {
            raise("orders_without_clicks", evidence);
        }
        if let Some(evidence) = alerts::spike(&day.to_string(), counts.day_orders, baseline) {
            raise("spike", evidence);
        }
    }
    alert_store::count_orders(conn, &counted).await?;
    alert_store::raise(conn, &raised).await
}

/// Takes back the sales credited to codes by texts the store then turned down as another
/// discount's (the brand's own promotion): an order placed while a code waited for its push
/// matched its text, but used the other discount. Each such conversion is reversed as a
/// cancelled order's would be (an approved one gets an adjustment). The order's other
/// creators keep their shares of it.
pub async fn reverse_collided(
    conn: &mut AsyncPgConnection,
    collided: &[Collided],
) -> Result<(), DbError> {
    let rows = conversions::matched_on(conn, collided).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut changes = Changes::default();
    for row in rows {
        let Some(renamed_at) = collided
            .iter()
            .find(|c| c.brand_id == row.brand_id && c.code_id == row.code_id)
            .map(|c| c.renamed_at)
        else {
            continue;
        };
        let current = amounts_of(&row);
        let nothing = Worth {
            revenue_minor: 0,
            discount_minor: 0,
            commission_minor: 0,
            commission_currency: row.commission_currency.clone(),
        };
        let followed =
            attribution::follow(&current, OrderState::Cancelled, &nothing, renamed_at, 0);
        let void = row.order_rank >= OrderState::Cancelled.rank();
        // A sale worth nothing (a 100 % code) changes no amount, but counts no more either.
        if void && followed.amounts == current && followed.adjustment.is_none() {
            continue;
        }
        tracing::info!(
            brand_id = row.brand_id,
            code_id = row.code_id,
            store_order_id = %row.store_order_id,
            "sale taken back: the store turned the code's text down as another discount's"
        );
        let mut next = with_amounts(row.clone(), &followed.amounts);
        // Void from now on, as a cancelled order's is: a later state of the order (a partial
        // refund, an edit of its total) would otherwise price an approved one again, and the
        // sale is counted no more. `order_status` keeps following the store ([`taken_back`]).
        next.order_rank = next.order_rank.max(OrderState::Cancelled.rank());
        let index = changes.track(row);
        if let Some((revenue_minor, commission_minor)) = followed.adjustment {
            changes.adjustments.push((
                index,
                NewAdjustment {
                    brand_id: next.brand_id,
                    conversion_id: next.id,
                    revenue_minor,
                    commission_minor,
                    reason: "the code's text was another discount's at the store".to_owned(),
                },
            ));
        }
        changes.update(index, next);
    }
    changes.write(conn).await
}

/// Approves every conversion whose holding period is over (at most `limit`), in the caller's
/// transaction; returns how many.
pub async fn approve_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    let mut changes = Changes::default();
    for row in conversions::due(conn, now, limit).await? {
        let Some(amounts) = attribution::approve(&amounts_of(&row), now) else {
            continue;
        };
        let next = with_amounts(row.clone(), &amounts);
        let index = changes.track(row);
        changes.update(index, next);
    }
    let approved = changes.events.len();
    changes.write(conn).await?;
    Ok(approved)
}
