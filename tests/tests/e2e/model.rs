//! Model-based test: random sequences of roster changes, mints, orders, partial refunds,
//! cancellations, late (stale) events and redeliveries run against the suite and against a small
//! in-memory model of the business rules; every campaign figure and every conversion's status
//! must agree. Each case is a brand of its own on one running suite.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use suite_tests::{Suite, add, brand, profile, register_as};
use tracking_api::attribution::v1::{
    ConversionStatus, GetCampaignPerformanceRequest, ListConversionsRequest,
};
use tracking_api::common::v1::{PageRequest, Provider};
use tracking_api::gateway::v1::{IngestOrdersRequest, Order, OrderStatus};
use tracking_api::mint::v1::MintCodeRequest;
use tracking_api::plan::v1::{
    CodeTrigger, Commission, CreateCampaignRequest, CreatePlanRequest, Discount, Plan, commission,
    discount,
};
use tracking_testkit::authed;

const CREATORS: i64 = 3;
const ORDERS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// Creator joins (approved) and gets a code.
    Join(i64),
    /// Order `n` paid with creator `c`'s code (or an unknown code when `c` has none).
    Pay {
        order: usize,
        creator: i64,
        amount: i64,
    },
    /// A partial refund of `percent` % of the order's total, cumulative.
    Refund {
        order: usize,
        percent: i64,
    },
    Cancel {
        order: usize,
    },
    /// The order's last event delivered again.
    Redeliver {
        order: usize,
    },
    /// A stale "created" state of the order arriving late.
    Stale {
        order: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..=CREATORS).prop_map(Op::Join),
        4 => (0..ORDERS, 1..=CREATORS, 100i64..50_000).prop_map(|(order, creator, amount)| Op::Pay {
            order,
            creator,
            amount
        }),
        2 => (0..ORDERS, 1i64..100).prop_map(|(order, percent)| Op::Refund { order, percent }),
        1 => (0..ORDERS).prop_map(|order| Op::Cancel { order }),
        1 => (0..ORDERS).prop_map(|order| Op::Redeliver { order }),
        1 => (0..ORDERS).prop_map(|order| Op::Stale { order }),
    ]
}

/// The model of one order as attribution should see it (holding period 30 days: pending).
#[derive(Clone, Debug)]
struct ModelOrder {
    creator: Option<i64>,
    total: i64,
    refunded: i64,
    void: bool,
    /// The commission taken back when it was voided: what was still owed then (an earlier
    /// partial refund had already reduced it).
    reversed: i64,
    /// The last state sent, to redeliver.
    last: Order,
}

#[derive(Default)]
struct Model {
    joined: BTreeMap<i64, String>,
    orders: BTreeMap<usize, ModelOrder>,
}

/// The plan's 10 % of an order, before refunds.
fn commission_of(total: i64) -> i64 {
    scale(total, 1000, 10_000)
}

/// What is still owed on an order before it is voided.
fn owed(m: &ModelOrder) -> i64 {
    scale(commission_of(m.total), m.total - m.refunded, m.total)
}

fn scale(amount: i64, num: i64, den: i64) -> i64 {
    (i128::from(amount) * i128::from(num) / i128::from(den)) as i64
}

impl Model {
    /// (orders, revenue, pending, reversed) the campaign must show, and each order's status.
    fn expected(&self) -> ((i64, i64, i64, i64), BTreeMap<String, ConversionStatus>) {
        let mut figures = (0, 0, 0, 0);
        let mut statuses = BTreeMap::new();
        for (n, order) in &self.orders {
            if order.creator.is_none() {
                continue;
            }
            let remaining = order.total - order.refunded;
            let commission = scale(commission_of(order.total), remaining, order.total);
            if order.void {
                figures.3 += order.reversed;
                statuses.insert(format!("M-{n}"), ConversionStatus::Reversed);
            } else {
                figures.0 += 1;
                figures.1 += scale(order.total, remaining, order.total);
                figures.2 += commission;
                statuses.insert(format!("M-{n}"), ConversionStatus::Pending);
            }
        }
        (figures, statuses)
    }
}

fn order(
    integration: i64,
    n: usize,
    status: OrderStatus,
    code: &str,
    total: i64,
    refunded: i64,
) -> Order {
    Order {
        integration_id: integration,
        store_order_id: format!("M-{n}"),
        status: status as i32,
        codes: vec![code.to_owned()],
        currency: "EUR".into(),
        subtotal_minor: total,
        total_minor: total,
        refunded_minor: refunded,
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        ..Order::default()
    }
}

async fn run_case(suite: &Suite, brand_id: i64, ops: &[Op]) -> Result<(), TestCaseError> {
    let token = brand(brand_id);
    let integration = register_as(suite, &token, Provider::Sandbox, "Model store").await;
    let plan = suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: "Model".into(),
                    integration_id: integration,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1000)),
                    }),
                    code_pattern: "{username}{discount}".into(),
                    click_url: "https://brand.example.com/".into(),
                    commission: Some(Commission {
                        kind: Some(commission::Kind::PercentBps(1000)),
                    }),
                    code_trigger: CodeTrigger::OnApproval as i32,
                    holding_period_days: 30,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .map_err(|s| TestCaseError::fail(s.to_string()))?;
    let campaign = suite
        .plan()
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Model".into(),
                plan_id: plan,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
        .map_err(|s| TestCaseError::fail(s.to_string()))?;

    let mut model = Model::default();
    for op in ops {
        let mut send = Vec::new();
        match op.clone() {
            Op::Join(creator) => {
                if model.joined.contains_key(&creator) {
                    continue;
                }
                add(
                    suite,
                    &token,
                    campaign,
                    creator,
                    profile("Mo", "Del", &format!("m{creator}x")),
                    true,
                )
                .await;
                let code = mint(suite, &token, campaign, creator).await?;
                model.joined.insert(creator, code);
            }
            Op::Pay {
                order: n,
                creator,
                amount,
            } => {
                if model.orders.contains_key(&n) {
                    continue;
                }
                // A creator who has not joined: the code is not one of ours (never attributed).
                let (code, who) = match model.joined.get(&creator) {
                    Some(code) => (code.to_lowercase(), Some(creator)),
                    None => (format!("NOBODY{creator}"), None),
                };
                let o = order(integration, n, OrderStatus::Paid, &code, amount, 0);
                model.orders.insert(
                    n,
                    ModelOrder {
                        creator: who,
                        total: amount,
                        refunded: 0,
                        void: false,
                        reversed: 0,
                        last: o.clone(),
                    },
                );
                send.push(o);
            }
            Op::Refund { order: n, percent } => {
                let Some(m) = model.orders.get_mut(&n) else {
                    continue;
                };
                if m.void {
                    continue;
                }
                let refunded = (m.refunded + scale(m.total, percent, 100)).min(m.total);
                if refunded == m.refunded {
                    continue;
                }
                let status = if refunded >= m.total {
                    m.reversed = owed(m);
                    m.void = true;
                    OrderStatus::Refunded
                } else {
                    OrderStatus::PartiallyRefunded
                };
                m.refunded = refunded;
                let mut o = m.last.clone();
                o.status = status as i32;
                o.refunded_minor = refunded;
                m.last = o.clone();
                send.push(o);
            }
            Op::Cancel { order: n } => {
                let Some(m) = model.orders.get_mut(&n) else {
                    continue;
                };
                if m.void {
                    continue;
                }
                m.reversed = owed(m);
                m.void = true;
                let mut o = m.last.clone();
                o.status = OrderStatus::Cancelled as i32;
                m.last = o.clone();
                send.push(o);
            }
            Op::Redeliver { order: n } => {
                if let Some(m) = model.orders.get(&n) {
                    send.push(m.last.clone());
                }
            }
            Op::Stale { order: n } => {
                if let Some(m) = model.orders.get(&n) {
                    let mut o = m.last.clone();
                    o.status = OrderStatus::Created as i32;
                    o.refunded_minor = 0;
                    send.push(o);
                }
            }
        }
        if !send.is_empty() {
            let requests: Vec<IngestOrdersRequest> = send
                .into_iter()
                .map(|o| IngestOrdersRequest { order: Some(o) })
                .collect();
            suite
                .gateway()
                .ingest_orders(authed(tokio_stream::iter(requests), &token))
                .await
                .map_err(|s| TestCaseError::fail(s.to_string()))?;
        }
    }

    let ((orders, revenue, pending, reversed), statuses) = model.expected();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let totals = suite
            .attribution()
            .get_campaign_performance(authed(
                GetCampaignPerformanceRequest {
                    campaign_id: campaign,
                    range: None,
                },
                &token,
            ))
            .await
            .map(|r| {
                r.into_inner()
                    .performance
                    .and_then(|p| p.totals)
                    .unwrap_or_default()
            })
            .map_err(|s| TestCaseError::fail(s.to_string()))?;
        let eur = totals
            .currencies
            .iter()
            .find(|c| c.currency == "EUR")
            .cloned()
            .unwrap_or_default();
        let seen = (
            totals.orders,
            eur.revenue_minor,
            eur.commission_pending_minor,
            eur.commission_reversed_minor,
        );
        let conversions = suite
            .attribution()
            .list_conversions(authed(
                ListConversionsRequest {
                    campaign_id: campaign,
                    page: Some(PageRequest {
                        page_size: 500,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner().conversions)
            .map_err(|s| TestCaseError::fail(s.to_string()))?;
        let seen_statuses: BTreeMap<String, ConversionStatus> = conversions
            .iter()
            .map(|c| {
                (
                    c.store_order_id.clone(),
                    ConversionStatus::try_from(c.status).unwrap_or_default(),
                )
            })
            .collect();
        if seen == (orders, revenue, pending, reversed) && seen_statuses == statuses {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TestCaseError::fail(format!(
                "suite {seen:?} {seen_statuses:?} vs model {:?} {statuses:?} after {ops:?}",
                (orders, revenue, pending, reversed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mint(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
) -> Result<String, TestCaseError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match suite
            .mint()
            .mint_code(authed(
                MintCodeRequest {
                    campaign_id: campaign,
                    creator_id: creator,
                },
                token,
            ))
            .await
        {
            Ok(r) => return Ok(r.into_inner().code.map(|c| c.code).unwrap_or_default()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(s) => return Err(TestCaseError::fail(s.to_string())),
        }
    }
}

#[test]
fn the_suite_agrees_with_the_model() {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let suite = runtime.block_on(Suite::start());
    static BRAND: AtomicI64 = AtomicI64::new(1000);
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 50,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 8..30), |ops| {
        let brand_id = BRAND.fetch_add(1, Ordering::SeqCst);
        runtime.block_on(run_case(&suite, brand_id, &ops))
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
