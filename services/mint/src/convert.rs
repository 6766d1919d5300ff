//! Domain ↔ proto conversions for codes, failures, and PlanService's events.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use tracking_api::common::v1 as common;
use tracking_api::mint::v1 as pb;
use tracking_api::plan::v1 as plan_pb;

use crate::domain::links::{affiliate_is_tracking, tracking_url};
use crate::domain::{
    Campaign, Code, CodeStatus, Discount, Failure, Money, Plan, PlanTerms, Profile, RosterStatus,
    Trigger, Utm,
};
use crate::error::Error;
use crate::store::failures::FailureRow;

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn from_timestamp(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|ts| DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?))
}

pub fn status_to_proto(status: CodeStatus) -> pb::CodeStatus {
    match status {
        CodeStatus::Pending => pb::CodeStatus::Pending,
        CodeStatus::Active => pb::CodeStatus::Active,
        CodeStatus::Disabled => pb::CodeStatus::Disabled,
    }
}

pub fn status_from_proto(value: i32) -> Result<Option<CodeStatus>, Error> {
    match pb::CodeStatus::try_from(value) {
        Ok(pb::CodeStatus::Unspecified) => Ok(None),
        Ok(pb::CodeStatus::Pending) => Ok(Some(CodeStatus::Pending)),
        Ok(pb::CodeStatus::Active) => Ok(Some(CodeStatus::Active)),
        Ok(pb::CodeStatus::Disabled) => Ok(Some(CodeStatus::Disabled)),
        Err(_) => Err(Error::invalid("status", format!("unknown value {value}"))),
    }
}

pub fn code_to_proto(code: &Code, public_base_url: &str) -> pb::Code {
    let tracking = tracking_url(public_base_url, &code.slug);
    let affiliate = if affiliate_is_tracking(code.provider) {
        tracking.clone()
    } else {
        code.affiliate_url.clone()
    };
    pb::Code {
        id: code.id,
        campaign_id: code.campaign_id,
        creator_id: code.creator_id,
        plan_id: code.plan_id,
        integration_id: code.integration_id,
        provider: code.provider as i32,
        code: code.code.clone().unwrap_or_default(),
        status: status_to_proto(code.status) as i32,
        store_error: code.store_error.clone(),
        links: Some(pb::Links {
            tracking_url: tracking,
            slug: code.slug.clone(),
            destination_url: code.destination_url.clone(),
            affiliate_url: affiliate,
            expires_at: code.expires_at.map(timestamp),
        }),
        history: code
            .history
            .iter()
            .map(|change| pb::CodeChange {
                from_code: change.from.clone(),
                to_code: change.to.clone(),
                reason: change.reason.clone(),
                changed_at: Some(timestamp(change.at)),
                released_at: change.released_at.map(timestamp),
            })
            .collect(),
        created_at: Some(timestamp(code.created_at)),
        updated_at: Some(timestamp(code.updated_at)),
    }
}

fn reason_to_proto(failure: &Failure) -> pb::FailureReason {
    match failure {
        Failure::MissingProfileField(_) => pb::FailureReason::MissingProfileField,
        Failure::MissingSocialAccount(_) => pb::FailureReason::MissingSocialAccount,
        Failure::Pattern { .. } => pb::FailureReason::Pattern,
        Failure::StoreError(_) => pb::FailureReason::StoreError,
    }
}

/// A failure as just found (not yet stored).
pub fn failure_to_proto(key: (i64, i64, i64), failure: &Failure, attempts: i32) -> pb::MintFailure {
    pb::MintFailure {
        campaign_id: key.1,
        creator_id: key.2,
        reason: reason_to_proto(failure) as i32,
        fields: failure.fields(),
        message: failure.message(),
        attempts,
        failed_at: Some(timestamp(Utc::now())),
    }
}

pub fn failure_row_to_proto(row: &FailureRow) -> pb::MintFailure {
    let failure = row.failure();
    pb::MintFailure {
        campaign_id: row.campaign_id,
        creator_id: row.creator_id,
        reason: reason_to_proto(&failure) as i32,
        fields: row.fields.clone(),
        message: row.message.clone(),
        attempts: row.attempts,
        failed_at: Some(timestamp(row.failed_at)),
    }
}

fn money(money: &common::Money) -> Money {
    Money {
        amount_minor: money.amount_minor,
        currency: money.currency.clone(),
    }
}

/// The plan as minting sees it, from PlanService's event.
pub fn plan_from_event(brand_id: i64, plan: &plan_pb::Plan) -> Result<Plan, Error> {
    let discount = plan
        .discount
        .as_ref()
        .and_then(|d| d.kind.as_ref())
        .map(|kind| match kind {
            plan_pb::discount::Kind::PercentBps(bps) => Discount::PercentBps(*bps),
            plan_pb::discount::Kind::Fixed(fixed) => Discount::Fixed(money(fixed)),
        });
    let utm = plan.utm.clone().unwrap_or_default();
    let trigger = match plan_pb::CodeTrigger::try_from(plan.code_trigger) {
        Ok(plan_pb::CodeTrigger::OnAdd) => Trigger::OnAdd,
        _ => Trigger::OnApproval,
    };
    Ok(Plan {
        brand_id,
        id: plan.id,
        name: plan.name.clone(),
        integration_id: plan.integration_id,
        provider: common::Provider::try_from(plan.provider)
            .map_err(|_| Error::Internal(format!("plan {}: unknown provider", plan.id)))?,
        terms: PlanTerms {
            discount,
            code_pattern: plan.code_pattern.clone(),
            click_url: plan.click_url.clone(),
            utm: Utm {
                source: utm.source,
                medium: utm.medium,
                campaign: utm.campaign,
                term: utm.term,
                content: utm.content,
            },
            usage_limit: plan.usage_limit,
            once_per_customer: plan.once_per_customer,
            minimum_purchase: plan.minimum_purchase.as_ref().map(money),
            product_ids: plan.product_ids.clone(),
            category_ids: plan.category_ids.clone(),
            starts_at: from_timestamp(plan.starts_at.as_ref()),
            ends_at: from_timestamp(plan.ends_at.as_ref()),
        },
        trigger,
        archived: plan.archived,
        links_key: String::new(),
    })
}

pub fn campaign_from_event(brand_id: i64, campaign: &plan_pb::Campaign) -> Campaign {
    Campaign {
        brand_id,
        id: campaign.id,
        name: campaign.name.clone(),
        plan_id: (campaign.plan_id > 0).then_some(campaign.plan_id),
        archived: campaign.archived,
    }
}

/// A roster entry's status (an unknown one reads as added).
pub fn roster_status(entry: &plan_pb::RosterEntry) -> RosterStatus {
    match plan_pb::RosterStatus::try_from(entry.status) {
        Ok(plan_pb::RosterStatus::Approved) => RosterStatus::Approved,
        Ok(plan_pb::RosterStatus::Removed) => RosterStatus::Removed,
        _ => RosterStatus::Added,
    }
}

pub fn roster_from_event(entry: &plan_pb::RosterEntry) -> (Profile, RosterStatus) {
    let profile = entry.profile.clone().unwrap_or_default();
    let status = roster_status(entry);
    (
        Profile {
            first_name: profile.first_name,
            last_name: profile.last_name,
            email: profile.email,
            username: profile.username,
            social_handles: profile.social_handles.into_iter().collect(),
        },
        status,
    )
}

/// The ref a code's discount is pushed with, and deactivated by.
pub fn external_ref(code_id: i64) -> String {
    format!("code-{code_id}")
}

/// The code an [`external_ref`] names.
pub fn code_id_of_ref(external_ref: &str) -> Option<i64> {
    external_ref.strip_prefix("code-")?.parse().ok()
}

/// The push request for a code under its plan.
pub fn discount_spec(code: &Code, plan: &Plan) -> tracking_api::gateway::v1::DiscountSpec {
    use tracking_api::gateway::v1::{DiscountSpec, discount_spec::Value};
    let terms = &plan.terms;
    let money_pb = |m: &Money| common::Money {
        amount_minor: m.amount_minor,
        currency: m.currency.clone(),
    };
    DiscountSpec {
        code: code.code.clone().unwrap_or_default(),
        external_ref: external_ref(code.id),
        title: format!("{} / creator {}", plan.name, code.creator_id),
        value: terms.discount.as_ref().map(|d| match d {
            Discount::PercentBps(bps) => Value::PercentBps(*bps),
            Discount::Fixed(m) => Value::Fixed(money_pb(m)),
        }),
        usage_limit: terms.usage_limit,
        once_per_customer: terms.once_per_customer,
        minimum_purchase: terms.minimum_purchase.as_ref().map(money_pb),
        product_ids: terms.product_ids.clone(),
        category_ids: terms.category_ids.clone(),
        starts_at: terms.starts_at.map(timestamp),
        ends_at: terms.ends_at.map(timestamp),
        group_ref: format!("plan-{}", plan.id),
        group_title: plan.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CodeStatus;
    use tracking_api::common::v1::Provider;

    #[test]
    fn links_made_of_the_tracking_link_follow_the_suites_address() {
        let code = |provider: Provider, affiliate: &str| Code {
            brand_id: 1,
            id: 7,
            campaign_id: 2,
            creator_id: 3,
            plan_id: 4,
            integration_id: 5,
            provider,
            code: Some("ANA20".to_owned()),
            status: CodeStatus::Active,
            store_error: String::new(),
            slug: "abc".to_owned(),
            destination_url: String::new(),
            affiliate_url: affiliate.to_owned(),
            expires_at: None,
            history: Vec::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let links = |code: Code| code_to_proto(&code, "https://t.brand.example").links;
        // Stored when the suite answered at another address (or, for the sandbox, a link that
        // was never served): read as the tracking link at the address it has now.
        for (provider, stored) in [
            (
                Provider::Sandbox,
                "http://127.0.0.1:8080/sandbox/5/discount/ANA20",
            ),
            (Provider::Ast, "http://127.0.0.1:8080/r/abc"),
        ] {
            let read = links(code(provider, stored)).unwrap_or_default();
            assert_eq!(read.affiliate_url, "https://t.brand.example/r/abc");
            assert_eq!(read.tracking_url, read.affiliate_url);
        }
        let shopify = "https://s.myshopify.com/discount/ANA20?redirect=%2F";
        let read = links(code(Provider::Shopify, shopify)).unwrap_or_default();
        assert_eq!(read.affiliate_url, shopify, "the store's own link is kept");
    }
}
