//! Tracking plans and the rule that a plan may only ask for what its provider can do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{Capabilities, restriction_number};
use tracking_pattern::Pattern;

use super::Money;
use crate::error::Error;
use tracking_server::fields::check_text;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeTrigger {
    /// Codes are generated when the brand approves a creator (the default).
    OnApproval,
    /// Codes are generated as soon as a creator is added.
    OnAdd,
}

impl CodeTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeTrigger::OnApproval => "on_approval",
            CodeTrigger::OnAdd => "on_add",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "on_approval" => Some(CodeTrigger::OnApproval),
            "on_add" => Some(CodeTrigger::OnAdd),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discount {
    PercentBps(i32),
    Fixed(Money),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Commission {
    PercentBps(i32),
    FixedPerOrder(Money),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub term: String,
    pub content: String,
}

/// A plan's commercial terms: everything the provider's capabilities constrain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub discount: Option<Discount>,
    pub code_pattern: String,
    pub click_url: String,
    pub utm: Utm,
    /// 0 for no limit.
    pub usage_limit: i32,
    pub once_per_customer: bool,
    pub minimum_purchase: Option<Money>,
    pub product_ids: Vec<String>,
    pub category_ids: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub commission: Option<Commission>,
    /// Days a click attributes orders (0 for the default, 30).
    #[serde(default)]
    pub attribution_window_days: i32,
    /// Days between payment and approval of a conversion.
    #[serde(default)]
    pub holding_period_days: i32,
}

/// A stored plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub brand_id: i64,
    pub id: i64,
    pub name: String,
    pub integration_id: i64,
    pub provider: Provider,
    pub terms: Terms,
    pub code_trigger: CodeTrigger,
    pub report_visible: bool,
    pub archived_at: Option<DateTime<Utc>>,
    /// A campaign using the plan has started outreach.
    pub locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Plan {
    /// A plan may change only before outreach starts and while it is not archived.
    pub fn ensure_editable(&self) -> Result<(), Error> {
        if self.archived_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "plan {} is archived and can no longer change",
                self.id
            )));
        }
        if self.locked {
            return Err(Error::FailedPrecondition(format!(
                "plan {} is locked: a campaign using it has started outreach",
                self.id
            )));
        }
        Ok(())
    }
}

const MAX_URL: usize = 2048;
const MAX_UTM: usize = 200;
const MAX_RESTRICTIONS: usize = 1000;
const MAX_RESTRICTION_ID: usize = 100;

/// The provider's name, as errors give it.
fn provider_name(caps: &Capabilities) -> &'static str {
    Provider::try_from(caps.provider)
        .unwrap_or(Provider::Unspecified)
        .as_str_name()
}

impl Terms {
    /// Checks every field, and that the plan asks only for what `caps` (its provider's
    /// capabilities, from ProviderGateway) allows. Errors name the field and the provider.
    pub fn validate(&self, caps: &Capabilities) -> Result<(), Error> {
        self.validate_fields(caps)?;
        self.validate_later_rules(caps, None)
    }

    /// As [`Terms::validate`], for terms changed from `before`: each rule added after plans were
    /// first made ([`Terms::LATER_RULES`]) binds a plan that met it, so that a plan made before
    /// it can still be changed in other ways (and is still held to the others).
    pub fn validate_change(&self, caps: &Capabilities, before: &Terms) -> Result<(), Error> {
        self.validate_fields(caps)?;
        self.validate_later_rules(caps, Some(before))
    }

    /// The amounts the store is given (a fixed amount off, a minimum purchase), by field.
    fn store_amounts(&self) -> impl Iterator<Item = (&'static str, &Money)> {
        let fixed = match &self.discount {
            Some(Discount::Fixed(money)) => Some(("discount.fixed", money)),
            _ => None,
        };
        fixed.into_iter().chain(
            self.minimum_purchase
                .iter()
                .map(|money| ("minimum_purchase", money)),
        )
    }

    /// Whether the store is given an amount of money not given in `before` (any, without it):
    /// only then does its currency matter ([`Terms::validate_store_currency`]).
    pub fn has_new_store_amounts(&self, before: Option<&Terms>) -> bool {
        self.new_store_amounts(before).next().is_some()
    }

    /// The amounts the store is given that `before` did not give it.
    fn new_store_amounts<'a>(
        &'a self,
        before: Option<&'a Terms>,
    ) -> impl Iterator<Item = (&'static str, &'a Money)> {
        self.store_amounts().filter(move |amount| {
            before.is_none_or(|before| !before.store_amounts().any(|was| was == *amount))
        })
    }

    /// Checks that the amounts the store is given are in `store_currency`, the currency it keeps
    /// its prices in: a store takes an amount as that many units of its own currency, so 5.00
    /// USD off at a EUR store would take 5.00 EUR off. Only amounts changed from `before` are
    /// checked, so that a plan made before this rule can still change in other ways.
    pub fn validate_store_currency(
        &self,
        store_currency: &str,
        before: Option<&Terms>,
    ) -> Result<(), Error> {
        match self
            .new_store_amounts(before)
            .find(|(_, money)| !money.currency.eq_ignore_ascii_case(store_currency.trim()))
        {
            Some((field, money)) => Err(Error::invalid(
                &format!("{field}.currency"),
                format!(
                    "the store keeps its prices in {store_currency} and would take this amount as \
                     {store_currency}, not {}; give it in {store_currency}",
                    money.currency
                ),
            )),
            None => Ok(()),
        }
    }

    /// Rules added after plans were first made: without a code, the creators' links are what
    /// track a sale, so they must lead somewhere; a code pattern must tell creators apart; a
    /// provider that takes products or categories (not both) gets one kind. Each says what
    /// breaks it, if anything.
    const LATER_RULES: [fn(&Terms, &Capabilities) -> Option<Error>; 3] = [
        Terms::links_lead_somewhere,
        Terms::codes_tell_creators_apart,
        Terms::one_kind_of_restriction,
    ];

    /// Every later rule, but those `before` broke already.
    fn validate_later_rules(
        &self,
        caps: &Capabilities,
        before: Option<&Terms>,
    ) -> Result<(), Error> {
        for rule in Self::LATER_RULES {
            if before.is_some_and(|before| rule(before, caps).is_some()) {
                continue;
            }
            if let Some(broken) = rule(self, caps) {
                return Err(broken);
            }
        }
        Ok(())
    }

    fn links_lead_somewhere(&self, caps: &Capabilities) -> Option<Error> {
        (self.discount.is_none() && self.click_url.is_empty()).then(|| {
            Error::invalid(
                "click_url",
                format!(
                    "{} tracks sales through the creators' links when the plan has no discount; set the page they lead to",
                    provider_name(caps)
                ),
            )
        })
    }

    /// Codes told apart only by the suffixes minting appends would differ by a character or
    /// two: a shopper could guess another creator's.
    fn codes_tell_creators_apart(&self, caps: &Capabilities) -> Option<Error> {
        (caps.discount_codes
            && self.discount.is_some()
            && Pattern::parse(&self.code_pattern)
                .is_ok_and(|p| !p.has_per_creator_variable() && p.random_chars() == 0))
        .then(|| {
            Error::invalid(
                "code_pattern",
                "has neither a creator variable ({username}, a name, a social handle) nor \
                 {random:N}: every creator would get the same code",
            )
        })
    }

    fn one_kind_of_restriction(&self, caps: &Capabilities) -> Option<Error> {
        (!self.product_ids.is_empty()
            && !self.category_ids.is_empty()
            && caps.products_or_categories_only)
            .then(|| {
                Error::invalid(
                    "category_ids",
                    format!(
                        "{} restricts a discount to products or to categories (collections), not both; use one",
                        provider_name(caps)
                    ),
                )
            })
    }

    fn validate_fields(&self, caps: &Capabilities) -> Result<(), Error> {
        let provider = provider_name(caps);
        let unsupported = |field: &str, what: &str| {
            Error::invalid(field, format!("{provider} does not support {what}"))
        };

        match &self.discount {
            Some(Discount::PercentBps(bps)) if !(1..=10_000).contains(bps) => {
                return Err(Error::invalid(
                    "discount.percent_bps",
                    "must be 1..=10000 basis points (2000 = 20 %)",
                ));
            }
            Some(Discount::PercentBps(_)) => {}
            Some(Discount::Fixed(money)) => money.validate("discount.fixed", 1)?,
            None if !caps.tracking_without_discount => {
                return Err(Error::invalid(
                    "discount",
                    format!("{provider} tracks sales through discount codes; set a discount"),
                ));
            }
            None => {}
        }
        if self.discount.is_some() && !caps.discount_codes {
            return Err(unsupported("discount", "discount codes"));
        }

        if caps.discount_codes && self.discount.is_some() {
            if self.code_pattern.trim().is_empty() {
                return Err(Error::invalid(
                    "code_pattern",
                    format!(
                        "{provider} needs a code to track a sale; set a pattern like {{username}}{{discount}}"
                    ),
                ));
            }
            // The engine skips control characters in stored patterns; a new one has none.
            if self.code_pattern.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "code_pattern",
                    "must not contain control characters",
                ));
            }
            Pattern::parse(&self.code_pattern)
                .map_err(|err| Error::invalid("code_pattern", err.to_string()))?;
        } else if !self.code_pattern.is_empty() {
            return Err(unsupported("code_pattern", "discount codes"));
        }

        if !self.click_url.is_empty() {
            if !caps.click_links {
                return Err(unsupported("click_url", "tracking links"));
            }
            validate_url("click_url", &self.click_url)?;
        }
        for (field, value) in [
            ("utm.source", &self.utm.source),
            ("utm.medium", &self.utm.medium),
            ("utm.campaign", &self.utm.campaign),
            ("utm.term", &self.utm.term),
            ("utm.content", &self.utm.content),
        ] {
            check_text(value, MAX_UTM).map_err(|message| Error::invalid(field, message))?;
        }

        if self.usage_limit < 0 {
            return Err(Error::invalid(
                "usage_limit",
                "must be 0 (no limit) or more",
            ));
        }
        if self.usage_limit > 0 && !caps.usage_limits {
            return Err(unsupported("usage_limit", "usage limits"));
        }
        if self.once_per_customer && !caps.one_time_use {
            return Err(unsupported("once_per_customer", "one use per customer"));
        }

        if let Some(minimum) = &self.minimum_purchase {
            if !caps.minimum_purchase {
                return Err(unsupported(
                    "minimum_purchase",
                    "a minimum purchase (Shopify only)",
                ));
            }
            minimum.validate("minimum_purchase", 1)?;
        }

        for (field, ids) in [
            ("product_ids", &self.product_ids),
            ("category_ids", &self.category_ids),
        ] {
            if ids.is_empty() {
                continue;
            }
            if !caps.product_restrictions {
                return Err(unsupported(field, "product and category restrictions"));
            }
            if ids.len() > MAX_RESTRICTIONS {
                return Err(Error::invalid(
                    field,
                    format!("at most {MAX_RESTRICTIONS} ids"),
                ));
            }
            if let Some(bad) = ids.iter().position(|id| {
                id.trim().is_empty()
                    || id.len() > MAX_RESTRICTION_ID
                    || id.chars().any(char::is_control)
            }) {
                return Err(Error::invalid(
                    &format!("{field}[{bad}]"),
                    format!("must be 1..={MAX_RESTRICTION_ID} characters, no control characters"),
                ));
            }
            let gid_prefix = if field == "product_ids" {
                &caps.product_gid_prefix
            } else {
                &caps.category_gid_prefix
            };
            if caps.numeric_restriction_ids
                && let Some(bad) = ids
                    .iter()
                    .position(|id| restriction_number(id, gid_prefix).is_none())
            {
                let written = if gid_prefix.is_empty() {
                    String::new()
                } else {
                    format!(", or {gid_prefix}N")
                };
                return Err(Error::invalid(
                    &format!("{field}[{bad}]"),
                    format!("{provider} takes the store's numeric ids here{written}"),
                ));
            }
        }

        if (self.starts_at.is_some() || self.ends_at.is_some()) && !caps.active_dates {
            let field = if self.starts_at.is_some() {
                "starts_at"
            } else {
                "ends_at"
            };
            return Err(unsupported(field, "active dates"));
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at)
            && end <= start
        {
            return Err(Error::invalid("ends_at", "must be after starts_at"));
        }

        match &self.commission {
            Some(Commission::PercentBps(bps)) if !(0..=10_000).contains(bps) => {
                return Err(Error::invalid(
                    "commission.percent_bps",
                    "must be 0..=10000 basis points",
                ));
            }
            Some(Commission::FixedPerOrder(money)) => {
                money.validate("commission.fixed_per_order", 0)?;
            }
            _ => {}
        }
        if !(0..=365).contains(&self.attribution_window_days) {
            return Err(Error::invalid(
                "attribution_window_days",
                "must be 1..=365 days, or 0 for the default of 30",
            ));
        }
        if !(0..=365).contains(&self.holding_period_days) {
            return Err(Error::invalid(
                "holding_period_days",
                "must be 0..=365 days",
            ));
        }
        Ok(())
    }
}

fn validate_url(field: &str, url: &str) -> Result<(), Error> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !ok || url.len() > MAX_URL {
        return Err(Error::invalid(
            field,
            format!("must be an http(s) URL of at most {MAX_URL} characters"),
        ));
    }
    Ok(())
}

/// The fields `UpdatePlan` may change (`update_mask` paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanField {
    Name,
    Discount,
    CodePattern,
    ClickUrl,
    Utm,
    UsageLimit,
    OncePerCustomer,
    MinimumPurchase,
    ProductIds,
    CategoryIds,
    StartsAt,
    EndsAt,
    Commission,
    AttributionWindowDays,
    HoldingPeriodDays,
}

impl PlanField {
    pub fn parse(path: &str) -> Result<PlanField, Error> {
        Ok(match path {
            "name" => PlanField::Name,
            "discount" => PlanField::Discount,
            "code_pattern" => PlanField::CodePattern,
            "click_url" => PlanField::ClickUrl,
            "utm" => PlanField::Utm,
            "usage_limit" => PlanField::UsageLimit,
            "once_per_customer" => PlanField::OncePerCustomer,
            "minimum_purchase" => PlanField::MinimumPurchase,
            "product_ids" => PlanField::ProductIds,
            "category_ids" => PlanField::CategoryIds,
            "starts_at" => PlanField::StartsAt,
            "ends_at" => PlanField::EndsAt,
            "commission" => PlanField::Commission,
            "attribution_window_days" => PlanField::AttributionWindowDays,
            "holding_period_days" => PlanField::HoldingPeriodDays,
            "code_trigger" => {
                return Err(Error::invalid(
                    "update_mask",
                    "code_trigger changes through SetCodeGeneration",
                ));
            }
            "report_visible" => {
                return Err(Error::invalid(
                    "update_mask",
                    "report_visible changes through SetReportVisibility",
                ));
            }
            other => {
                return Err(Error::invalid(
                    "update_mask",
                    format!("unknown or read-only path {other:?}"),
                ));
            }
        })
    }

    /// Copies this field from `from` into `into`.
    pub fn apply(self, into: &mut Terms, from: &Terms) {
        match self {
            PlanField::Name => {}
            PlanField::Discount => into.discount = from.discount.clone(),
            PlanField::CodePattern => into.code_pattern = from.code_pattern.clone(),
            PlanField::ClickUrl => into.click_url = from.click_url.clone(),
            PlanField::Utm => into.utm = from.utm.clone(),
            PlanField::UsageLimit => into.usage_limit = from.usage_limit,
            PlanField::OncePerCustomer => into.once_per_customer = from.once_per_customer,
            PlanField::MinimumPurchase => into.minimum_purchase = from.minimum_purchase.clone(),
            PlanField::ProductIds => into.product_ids = from.product_ids.clone(),
            PlanField::CategoryIds => into.category_ids = from.category_ids.clone(),
            PlanField::StartsAt => into.starts_at = from.starts_at,
            PlanField::EndsAt => into.ends_at = from.ends_at,
            PlanField::Commission => into.commission = from.commission.clone(),
            PlanField::AttributionWindowDays => {
                into.attribution_window_days = from.attribution_window_days
            }
            PlanField::HoldingPeriodDays => into.holding_period_days = from.holding_period_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast() -> Capabilities {
        Capabilities {
            provider: Provider::Ast as i32,
            affiliate_links: true,
            click_links: true,
            active_dates: true,
            tracking_without_discount: true,
            ..Capabilities::default()
        }
    }

    #[test]
    fn each_later_rule_binds_on_its_own() {
        let shopify = Capabilities {
            provider: Provider::Shopify as i32,
            discount_codes: true,
            max_code_length: 255,
            click_links: true,
            product_restrictions: true,
            products_or_categories_only: true,
            ..Capabilities::default()
        };
        // Saved before patterns had to tell creators apart: it may change otherwise, but not
        // come to break another rule of the later ones.
        let before = Terms {
            discount: Some(Discount::PercentBps(2000)),
            code_pattern: "SUMMER{discount}".to_owned(),
            product_ids: vec!["1".to_owned()],
            ..Terms::default()
        };
        let both_kinds = Terms {
            category_ids: vec!["5".to_owned()],
            ..before.clone()
        };
        assert!(matches!(
            both_kinds.validate_change(&shopify, &before),
            Err(Error::InvalidArgument { field, .. }) if field == "category_ids"
        ));
        // And one that broke only the restriction rule may not take such a pattern.
        let restricted = Terms {
            code_pattern: "{username}".to_owned(),
            ..both_kinds.clone()
        };
        let guessable = Terms {
            code_pattern: "SUMMER{discount}".to_owned(),
            ..restricted.clone()
        };
        assert!(matches!(
            guessable.validate_change(&shopify, &restricted),
            Err(Error::InvalidArgument { field, .. }) if field == "code_pattern"
        ));
    }

    #[test]
    fn a_pattern_made_before_creators_had_to_be_told_apart_may_still_change_otherwise() {
        let sandbox = Capabilities {
            provider: Provider::Sandbox as i32,
            discount_codes: true,
            max_code_length: 64,
            click_links: true,
            ..Capabilities::default()
        };
        let before = Terms {
            discount: Some(Discount::PercentBps(2000)),
            code_pattern: "SUMMER{discount}".to_owned(),
            ..Terms::default()
        };
        assert!(matches!(
            before.validate(&sandbox),
            Err(Error::InvalidArgument { field, .. }) if field == "code_pattern"
        ));
        let moved = Terms {
            click_url: "https://brand.example.com/sale".to_owned(),
            ..before.clone()
        };
        assert!(moved.validate_change(&sandbox, &before).is_ok());
        let told_apart = Terms {
            code_pattern: "SUMMER{discount}{random:4}".to_owned(),
            ..before
        };
        assert!(told_apart.validate(&sandbox).is_ok());
    }

    #[test]
    fn a_plan_made_before_a_rule_may_still_change_but_not_newly_break_it() {
        // Made before a plan without a discount needed a page for its links.
        let before = Terms::default();
        let renamed_window = Terms {
            attribution_window_days: 14,
            ..before.clone()
        };
        assert!(renamed_window.validate(&ast()).is_err(), "a new plan must");
        assert!(
            renamed_window.validate_change(&ast(), &before).is_ok(),
            "another change of a plan made before the rule"
        );
        // A plan that met the rule may not come to break it.
        let linked = Terms {
            click_url: "https://brand.example.com".to_owned(),
            ..before
        };
        let cleared = Terms {
            click_url: String::new(),
            ..linked.clone()
        };
        assert!(matches!(
            cleared.validate_change(&ast(), &linked),
            Err(Error::InvalidArgument { field, .. }) if field == "click_url"
        ));
    }

    #[test]
    fn the_amounts_a_store_is_given_must_be_in_its_currency() {
        let money = |currency: &str| Money {
            amount_minor: 500,
            currency: currency.to_owned(),
        };
        let fixed_usd = Terms {
            discount: Some(Discount::Fixed(money("USD"))),
            ..Terms::default()
        };
        let refused = fixed_usd.validate_store_currency("EUR", None);
        assert!(
            matches!(&refused, Err(Error::InvalidArgument { field, .. }) if field == "discount.fixed.currency"),
            "{refused:?}"
        );
        assert!(fixed_usd.validate_store_currency("usd", None).is_ok());
        let minimum_usd = Terms {
            discount: Some(Discount::Fixed(money("EUR"))),
            minimum_purchase: Some(money("USD")),
            ..Terms::default()
        };
        let refused = minimum_usd.validate_store_currency("EUR", None);
        assert!(
            matches!(&refused, Err(Error::InvalidArgument { field, .. }) if field == "minimum_purchase.currency"),
            "{refused:?}"
        );
        // A commission is paid to the creator, not given to the store.
        let commission_usd = Terms {
            discount: Some(Discount::PercentBps(2000)),
            commission: Some(Commission::FixedPerOrder(money("USD"))),
            ..Terms::default()
        };
        assert!(!commission_usd.has_new_store_amounts(None));
        assert!(commission_usd.validate_store_currency("EUR", None).is_ok());
        // A plan made before the rule may change in other ways, but not to a new amount.
        let renamed = Terms {
            code_pattern: "{username}".to_owned(),
            ..fixed_usd.clone()
        };
        assert!(
            renamed
                .validate_store_currency("EUR", Some(&fixed_usd))
                .is_ok()
        );
        let new_amount = Terms {
            discount: Some(Discount::Fixed(Money {
                amount_minor: 700,
                currency: "USD".to_owned(),
            })),
            ..fixed_usd.clone()
        };
        assert!(
            new_amount
                .validate_store_currency("EUR", Some(&fixed_usd))
                .is_err()
        );
    }
}
