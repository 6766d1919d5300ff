//! Fuzz target for PlanService's proto-to-domain validation: `convert::terms_from_proto` and
//! `Terms::validate` against a provider's capabilities, which guard CreatePlan and UpdatePlan.
//!
//! Input layout: the first byte `n`, then `n` bytes decoded as `tracking.gateway.v1.Capabilities`
//! (arbitrary capabilities, so every combination of what a provider allows is reached), then the
//! rest decoded as `tracking.plan.v1.Plan`. Any panic, including a failed assertion, is a bug.

#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use plan_service::convert::{plan_to_proto, terms_from_proto};
use plan_service::domain::plan::{CodeTrigger, Commission, Discount, Plan, Terms};
use plan_service::error::Error;
use prost::Message;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::Capabilities;
use tracking_api::plan::v1 as pb;
use tracking_pattern::Pattern;

/// The `Plan` fields a validation error may name (the part before any `.` or `[`).
const FIELDS: &[&str] = &[
    "discount",
    "code_pattern",
    "click_url",
    "utm",
    "usage_limit",
    "once_per_customer",
    "minimum_purchase",
    "product_ids",
    "category_ids",
    "starts_at",
    "ends_at",
    "commission",
    "attribution_window_days",
    "holding_period_days",
];

fn check_error(error: &Error) {
    let Error::InvalidArgument { field, message } = error else {
        panic!("validation failed with something other than INVALID_ARGUMENT: {error:?}");
    };
    let head = field.split(['.', '[']).next().unwrap_or_default();
    assert!(FIELDS.contains(&head), "unknown field {field:?}");
    assert!(!message.is_empty(), "no message for {field}");
}

fn check_accepted(terms: &Terms, caps: &Capabilities) {
    match &terms.discount {
        Some(Discount::PercentBps(bps)) => assert!((1..=10_000).contains(bps)),
        Some(Discount::Fixed(money)) => {
            assert!(money.amount_minor >= 1);
            assert!(money.currency.len() == 3);
        }
        None => assert!(caps.tracking_without_discount),
    }
    if terms.discount.is_some() {
        assert!(caps.discount_codes);
        assert!(Pattern::parse(&terms.code_pattern).is_ok());
    } else {
        assert!(terms.code_pattern.is_empty());
    }
    assert!(terms.click_url.is_empty() || caps.click_links);
    assert!(terms.usage_limit >= 0);
    assert!(terms.usage_limit == 0 || caps.usage_limits);
    assert!(!terms.once_per_customer || caps.one_time_use);
    assert!(terms.minimum_purchase.is_none() || caps.minimum_purchase);
    assert!(
        (terms.product_ids.is_empty() && terms.category_ids.is_empty())
            || caps.product_restrictions
    );
    assert!(
        terms.product_ids.is_empty()
            || terms.category_ids.is_empty()
            || !caps.products_or_categories_only
    );
    assert!((terms.starts_at.is_none() && terms.ends_at.is_none()) || caps.active_dates);
    if let (Some(start), Some(end)) = (terms.starts_at, terms.ends_at) {
        assert!(end > start);
    }
    if let Some(Commission::PercentBps(bps)) = &terms.commission {
        assert!((0..=10_000).contains(bps));
    }
    assert!((0..=365).contains(&terms.attribution_window_days));
    assert!((0..=365).contains(&terms.holding_period_days));
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (caps, plan) = rest.split_at(usize::from(n).min(rest.len()));
    let (Ok(mut caps), Ok(proto)) = (Capabilities::decode(caps), pb::Plan::decode(plan)) else {
        return;
    };
    // The provider only names the provider in messages; keep it a known one.
    caps.provider =
        Provider::try_from(caps.provider).map_or(Provider::Shopify as i32, |_| caps.provider);

    let terms = match terms_from_proto(&proto) {
        Ok(terms) => terms,
        Err(error) => {
            check_error(&error);
            return;
        }
    };
    let verdict = terms.validate(&caps);
    // The same input, the same answer.
    assert_eq!(
        verdict.as_ref().map_err(ToString::to_string),
        terms.validate(&caps).as_ref().map_err(ToString::to_string)
    );
    if let Err(error) = verdict {
        check_error(&error);
        return;
    }
    check_accepted(&terms, &caps);

    // An accepted plan is stored as JSON and served back as proto: both must give the same terms,
    // which validate again.
    let json = serde_json::to_string(&terms).expect("terms serialize");
    let stored: Terms = serde_json::from_str(&json).expect("stored terms deserialize");
    assert_eq!(stored, terms, "terms change through their JSON form");
    let epoch = DateTime::from_timestamp(0, 0).expect("the epoch");
    let plan = Plan {
        brand_id: 1,
        id: 1,
        name: "fuzz".to_owned(),
        integration_id: 1,
        provider: Provider::Shopify,
        terms: terms.clone(),
        code_trigger: CodeTrigger::OnAdd,
        report_visible: false,
        archived_at: None,
        locked: false,
        created_at: epoch,
        updated_at: epoch,
    };
    let served = terms_from_proto(&plan_to_proto(&plan)).expect("a served plan converts back");
    assert_eq!(served, terms, "terms change through the proto served back");
    assert!(
        served.validate(&caps).is_ok(),
        "served terms no longer validate"
    );
});
