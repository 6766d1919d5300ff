//! Domain ↔ proto conversions, shared by the handlers and the event stream. Conversions from
//! proto check shape (enums, oneofs, timestamps) and name the field; rules live in `domain`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use tracking_api::common::v1 as common;
use tracking_api::plan::v1 as pb;

use crate::domain::Money;
use crate::domain::campaign::Campaign;
use crate::domain::plan::{CodeTrigger, Commission, Discount, Plan, Terms, Utm};
use crate::domain::roster::{Profile, RosterEntry, RosterStatus};
use crate::error::Error;

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn opt_timestamp(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(timestamp)
}

pub fn from_timestamp(field: &str, ts: Option<&Timestamp>) -> Result<Option<DateTime<Utc>>, Error> {
    let Some(ts) = ts else { return Ok(None) };
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::invalid(field, "nanos must be 0..=999999999"));
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .filter(|at| (1970..=9999).contains(&chrono::Datelike::year(at)))
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

fn money_to_proto(money: &Money) -> common::Money {
    common::Money {
        amount_minor: money.amount_minor,
        currency: money.currency.clone(),
    }
}

fn money_from_proto(money: &common::Money) -> Money {
    Money {
        amount_minor: money.amount_minor,
        currency: money.currency.trim().to_owned(),
    }
}

pub fn code_trigger_to_proto(trigger: CodeTrigger) -> pb::CodeTrigger {
    match trigger {
        CodeTrigger::OnApproval => pb::CodeTrigger::OnApproval,
        CodeTrigger::OnAdd => pb::CodeTrigger::OnAdd,
    }
}

/// `None` for UNSPECIFIED; an error for values outside the enum.
pub fn code_trigger_from_proto(value: i32) -> Result<Option<CodeTrigger>, Error> {
    match pb::CodeTrigger::try_from(value) {
        Ok(pb::CodeTrigger::Unspecified) => Ok(None),
        Ok(pb::CodeTrigger::OnApproval) => Ok(Some(CodeTrigger::OnApproval)),
        Ok(pb::CodeTrigger::OnAdd) => Ok(Some(CodeTrigger::OnAdd)),
        Err(_) => Err(Error::invalid(
            "code_trigger",
            format!("unknown value {value}"),
        )),
    }
}

pub fn roster_status_from_proto(value: i32) -> Result<Option<RosterStatus>, Error> {
    match pb::RosterStatus::try_from(value) {
        Ok(pb::RosterStatus::Unspecified) => Ok(None),
        Ok(pb::RosterStatus::Added) => Ok(Some(RosterStatus::Added)),
        Ok(pb::RosterStatus::Approved) => Ok(Some(RosterStatus::Approved)),
        Ok(pb::RosterStatus::Removed) => Ok(Some(RosterStatus::Removed)),
        Err(_) => Err(Error::invalid("status", format!("unknown value {value}"))),
    }
}

/// The terms a request's plan message asks for (shape only; `Terms::validate` checks the rules).
pub fn terms_from_proto(plan: &pb::Plan) -> Result<Terms, Error> {
    let discount = match plan.discount.as_ref().and_then(|d| d.kind.as_ref()) {
        None => None,
        Some(pb::discount::Kind::PercentBps(bps)) => Some(Discount::PercentBps(*bps)),
        Some(pb::discount::Kind::Fixed(money)) => Some(Discount::Fixed(money_from_proto(money))),
    };
    let commission = match plan.commission.as_ref().and_then(|c| c.kind.as_ref()) {
        None => None,
        Some(pb::commission::Kind::PercentBps(bps)) => Some(Commission::PercentBps(*bps)),
        Some(pb::commission::Kind::FixedPerOrder(money)) => {
            Some(Commission::FixedPerOrder(money_from_proto(money)))
        }
    };
    let utm = plan.utm.clone().unwrap_or_default();
    Ok(Terms {
        discount,
        code_pattern: plan.code_pattern.trim().to_owned(),
        click_url: plan.click_url.trim().to_owned(),
        utm: Utm {
            source: utm.source,
            medium: utm.medium,
            campaign: utm.campaign,
            term: utm.term,
            content: utm.content,
        },
        usage_limit: plan.usage_limit,
        once_per_customer: plan.once_per_customer,
        minimum_purchase: plan.minimum_purchase.as_ref().map(money_from_proto),
        product_ids: plan.product_ids.clone(),
        category_ids: plan.category_ids.clone(),
        starts_at: from_timestamp("starts_at", plan.starts_at.as_ref())?,
        ends_at: from_timestamp("ends_at", plan.ends_at.as_ref())?,
        commission,
        attribution_window_days: plan.attribution_window_days,
        holding_period_days: plan.holding_period_days,
    })
}

pub fn plan_to_proto(plan: &Plan) -> pb::Plan {
    let terms = &plan.terms;
    pb::Plan {
        id: plan.id,
        name: plan.name.clone(),
        integration_id: plan.integration_id,
        provider: plan.provider as i32,
        discount: terms.discount.as_ref().map(|d| pb::Discount {
            kind: Some(match d {
                Discount::PercentBps(bps) => pb::discount::Kind::PercentBps(*bps),
                Discount::Fixed(money) => pb::discount::Kind::Fixed(money_to_proto(money)),
            }),
        }),
        code_pattern: terms.code_pattern.clone(),
        click_url: terms.click_url.clone(),
        utm: Some(pb::Utm {
            source: terms.utm.source.clone(),
            medium: terms.utm.medium.clone(),
            campaign: terms.utm.campaign.clone(),
            term: terms.utm.term.clone(),
            content: terms.utm.content.clone(),
        }),
        usage_limit: terms.usage_limit,
        once_per_customer: terms.once_per_customer,
        minimum_purchase: terms.minimum_purchase.as_ref().map(money_to_proto),
        product_ids: terms.product_ids.clone(),
        category_ids: terms.category_ids.clone(),
        starts_at: opt_timestamp(terms.starts_at),
        ends_at: opt_timestamp(terms.ends_at),
        commission: terms.commission.as_ref().map(|c| pb::Commission {
            kind: Some(match c {
                Commission::PercentBps(bps) => pb::commission::Kind::PercentBps(*bps),
                Commission::FixedPerOrder(money) => {
                    pb::commission::Kind::FixedPerOrder(money_to_proto(money))
                }
            }),
        }),
        code_trigger: code_trigger_to_proto(plan.code_trigger) as i32,
        report_visible: plan.report_visible,
        archived: plan.archived_at.is_some(),
        locked: plan.locked,
        created_at: Some(timestamp(plan.created_at)),
        updated_at: Some(timestamp(plan.updated_at)),
        attribution_window_days: terms.attribution_window_days,
        holding_period_days: terms.holding_period_days,
    }
}

pub fn campaign_to_proto(campaign: &Campaign) -> pb::Campaign {
    pb::Campaign {
        id: campaign.id,
        name: campaign.name.clone(),
        plan_id: campaign.plan_id.unwrap_or_default(),
        shared_plan_warning: campaign
            .shared_plan_warning()
            .map(|message| pb::SharedPlanWarning {
                other_campaign_ids: campaign.shared_with.clone(),
                message,
            }),
        outreach_started: campaign.outreach_started_at.is_some(),
        outreach_started_at: opt_timestamp(campaign.outreach_started_at),
        archived: campaign.archived_at.is_some(),
        created_at: Some(timestamp(campaign.created_at)),
        updated_at: Some(timestamp(campaign.updated_at)),
    }
}

pub fn profile_from_proto(profile: Option<pb::CreatorProfile>) -> Profile {
    let profile = profile.unwrap_or_default();
    Profile {
        first_name: profile.first_name,
        last_name: profile.last_name,
        email: profile.email,
        username: profile.username,
        social_handles: profile.social_handles.into_iter().collect(),
    }
}

pub fn roster_entry_to_proto(entry: &RosterEntry) -> pb::RosterEntry {
    pb::RosterEntry {
        campaign_id: entry.campaign_id,
        creator_id: entry.creator_id,
        profile: Some(pb::CreatorProfile {
            first_name: entry.profile.first_name.clone(),
            last_name: entry.profile.last_name.clone(),
            email: entry.profile.email.clone(),
            username: entry.profile.username.clone(),
            social_handles: entry.profile.social_handles.clone().into_iter().collect(),
        }),
        status: match entry.status {
            RosterStatus::Added => pb::RosterStatus::Added,
            RosterStatus::Approved => pb::RosterStatus::Approved,
            RosterStatus::Removed => pb::RosterStatus::Removed,
        } as i32,
        added_at: Some(timestamp(entry.added_at)),
        approved_at: opt_timestamp(entry.approved_at),
        removed_at: opt_timestamp(entry.removed_at),
        updated_at: Some(timestamp(entry.updated_at)),
    }
}
