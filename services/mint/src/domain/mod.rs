//! CodeMintService's rules, free of tonic and SQL: what a plan means for minting, what a
//! creator must have before a code can be made, how a code is rendered and suffixed, and what
//! links each provider gets.

pub mod links;
pub mod render;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracking_api::common::v1::Provider;

/// Money in minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discount {
    PercentBps(i32),
    Fixed(Money),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub term: String,
    pub content: String,
}

/// The part of a plan minting and pushing use (projected from PlanService's events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTerms {
    pub discount: Option<Discount>,
    pub code_pattern: String,
    pub click_url: String,
    pub utm: Utm,
    pub usage_limit: i32,
    pub once_per_customer: bool,
    pub minimum_purchase: Option<Money>,
    pub product_ids: Vec<String>,
    pub category_ids: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    OnApproval,
    OnAdd,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OnApproval => "on_approval",
            Trigger::OnAdd => "on_add",
        }
    }

    pub fn parse(text: &str) -> Option<Trigger> {
        match text {
            "on_approval" => Some(Trigger::OnApproval),
            "on_add" => Some(Trigger::OnAdd),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub brand_id: i64,
    pub id: i64,
    pub name: String,
    pub integration_id: i64,
    pub provider: Provider,
    pub terms: PlanTerms,
    pub trigger: Trigger,
    pub archived: bool,
    /// What its links are made from, as the projection keys it (`plans.links_key`): a mint
    /// batch's codes are refused when their plan's key changed meanwhile. Empty for a plan not
    /// read from the projection (an event's).
    pub links_key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Campaign {
    pub brand_id: i64,
    pub id: i64,
    pub name: String,
    pub plan_id: Option<i64>,
    pub archived: bool,
}

/// A creator's profile snapshot, as PlanService sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub social_handles: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RosterStatus {
    Added,
    Approved,
    Removed,
}

impl RosterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RosterStatus::Added => "added",
            RosterStatus::Approved => "approved",
            RosterStatus::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<RosterStatus> {
        match text {
            "added" => Some(RosterStatus::Added),
            "approved" => Some(RosterStatus::Approved),
            "removed" => Some(RosterStatus::Removed),
            _ => None,
        }
    }
}

/// Whether a roster change calls for a code under `trigger`.
pub fn wants_code(trigger: Trigger, status: RosterStatus) -> bool {
    match status {
        RosterStatus::Removed => false,
        RosterStatus::Approved => true,
        RosterStatus::Added => trigger == Trigger::OnAdd,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeStatus {
    Pending,
    Active,
    Disabled,
}

impl CodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeStatus::Pending => "pending",
            CodeStatus::Active => "active",
            CodeStatus::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<CodeStatus> {
        match text {
            "pending" => Some(CodeStatus::Pending),
            "active" => Some(CodeStatus::Active),
            "disabled" => Some(CodeStatus::Disabled),
            _ => None,
        }
    }
}

/// One change of a code's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChange {
    pub from: String,
    pub to: String,
    /// `store_collision` or `manual`.
    pub reason: String,
    pub at: DateTime<Utc>,
    /// For a manual change whose old text the store went on taking (its discount disabled there
    /// later, by the pusher): when it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
}

/// A minted code (or link, for providers without codes) as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Code {
    pub brand_id: i64,
    pub id: i64,
    pub campaign_id: i64,
    pub creator_id: i64,
    pub plan_id: i64,
    pub integration_id: i64,
    pub provider: Provider,
    pub code: Option<String>,
    pub status: CodeStatus,
    pub store_error: String,
    pub slug: String,
    pub destination_url: String,
    pub affiliate_url: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub history: Vec<CodeChange>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a creator got no code, in terms the brand can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// First name, last name or email is missing.
    MissingProfileField(Vec<String>),
    /// The pattern uses networks the creator has not linked.
    MissingSocialAccount(Vec<String>),
    /// The pattern gives nothing usable for this creator: `fields` names the creator's own values
    /// that give nothing (a profile update may fix those); none when the plan's or the campaign's
    /// values are at fault.
    Pattern { why: String, fields: Vec<String> },
    /// The store refused the code for good.
    StoreError(String),
}

impl Failure {
    /// A pattern failure of the plan's or the campaign's making (no profile update fixes it).
    pub fn pattern(why: impl Into<String>) -> Failure {
        Failure::Pattern {
            why: why.into(),
            fields: Vec::new(),
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Failure::MissingProfileField(_) => "missing_profile_field",
            Failure::MissingSocialAccount(_) => "missing_social_account",
            Failure::Pattern { .. } => "pattern",
            Failure::StoreError(_) => "store_error",
        }
    }

    pub fn fields(&self) -> Vec<String> {
        match self {
            Failure::MissingProfileField(fields)
            | Failure::MissingSocialAccount(fields)
            | Failure::Pattern { fields, .. } => fields.clone(),
            Failure::StoreError(_) => Vec::new(),
        }
    }

    /// A profile update may fix it (and then retries it by itself).
    pub fn fixed_by_profile(&self) -> bool {
        match self {
            Failure::MissingProfileField(_) | Failure::MissingSocialAccount(_) => true,
            Failure::Pattern { fields, .. } => !fields.is_empty(),
            Failure::StoreError(_) => false,
        }
    }

    /// What the brand reads.
    pub fn message(&self) -> String {
        match self {
            Failure::MissingProfileField(fields) => format!(
                "MISSING_PROFILE_FIELD: the creator's profile lacks {}; update the profile and the code is minted",
                fields.join(", ")
            ),
            Failure::MissingSocialAccount(networks) => format!(
                "MISSING_SOCIAL_ACCOUNT: the code pattern uses {} but the creator has not linked it; link the account or change the pattern",
                networks.join(", ")
            ),
            Failure::Pattern { why, .. } => format!("PATTERN: {why}"),
            Failure::StoreError(why) => format!("STORE_ERROR: {why}"),
        }
    }

    pub fn from_stored(reason: &str, fields: Vec<String>, message: &str) -> Failure {
        match reason {
            "missing_profile_field" => Failure::MissingProfileField(fields),
            "missing_social_account" => Failure::MissingSocialAccount(fields),
            "store_error" => Failure::StoreError(message.to_owned()),
            _ => Failure::Pattern {
                why: message.to_owned(),
                fields,
            },
        }
    }
}
