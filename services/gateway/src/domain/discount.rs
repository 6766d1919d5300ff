//! Discount codes as the gateway pushes them to stores: what a push may contain, checked before
//! any store is asked, and what the store answered for each code.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::capabilities::Capabilities;
use crate::error::Error;
use tracking_server::fields::check_text;

/// Codes (or discounts) one push or disable call may carry: a store call per batch, bounded so one
/// call stays one statement at the sandbox and within a real store's bulk limits.
pub const MAX_BATCH: usize = 500;
const MAX_EXTERNAL_REF: usize = 100;
const MAX_GROUP_REF: usize = 60;
const MAX_TITLE: usize = 255;
const MAX_RESTRICTIONS: usize = 1000;
const MAX_RESTRICTION_ID: usize = 100;

/// Money in minor units with its ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscountValue {
    /// Basis points: 2000 = 20 %.
    PercentBps(i32),
    Fixed(Money),
}

/// The rules the store applies to a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Terms {
    /// `None` only in an invalid request: [`validate_discounts`] refuses it.
    pub value: Option<DiscountValue>,
    /// Total uses; 0 for no limit.
    pub usage_limit: i32,
    pub once_per_customer: bool,
    pub minimum_purchase: Option<Money>,
    pub product_ids: Vec<String>,
    pub category_ids: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// One discount code to create at a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discount {
    pub code: String,
    /// The pusher's id for the code: the same code with the same ref again is a retry.
    pub external_ref: String,
    pub title: String,
    pub terms: Terms,
    /// The set of codes this one belongs to, where a store may keep them under one discount.
    pub group: Option<DiscountGroup>,
}

/// Codes pushed with one set of terms (a plan's). A store that holds many codes under one
/// discount may keep a group's codes together (see [`Discount::shared_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscountGroup {
    /// The pusher's id for the group, e.g. `plan-12`.
    pub group_ref: String,
    /// The shared discount's title.
    pub title: String,
}

impl Discount {
    /// The key of the store discount this code may share with the other codes of its group: the
    /// group's ref and a fingerprint of the terms (codes of one group pushed with other terms
    /// get another shared discount). `None` when the code must be its own discount: no group, or
    /// limits a store counts per discount (a usage limit, once per customer), which per-creator
    /// codes must not share.
    pub fn shared_key(&self) -> Option<String> {
        let group = self.group.as_ref()?;
        if self.terms.usage_limit > 0 || self.terms.once_per_customer {
            return None;
        }
        // FNV-1a over the terms' JSON: stable across processes and releases, unlike std's hasher.
        let terms = serde_json::to_vec(&self.terms).unwrap_or_default();
        let hash = terms.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Some(format!("shared {} {:08x}", group.group_ref, hash as u32))
    }
}

/// One code the store holds (pushed earlier) to change in place: its code, title and terms become
/// `discount`'s. `discount.external_ref` is the ref the previous code was pushed with: a store
/// changes only a previous code it holds under that ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscountUpdate {
    /// The code as the store holds it now, matched case-insensitively.
    pub previous_code: String,
    /// What it becomes; `discount.code` may equal the previous code (only the terms change).
    pub discount: Discount,
}

impl Terms {
    /// The amounts the terms name in money (a fixed amount off, a minimum purchase), with what
    /// each is.
    fn amounts(&self) -> impl Iterator<Item = (&'static str, &Money)> {
        let fixed = match &self.value {
            Some(DiscountValue::Fixed(money)) => Some(("fixed amount off", money)),
            _ => None,
        };
        fixed.into_iter().chain(
            self.minimum_purchase
                .iter()
                .map(|m| ("minimum purchase", m)),
        )
    }

    /// Whether the terms name any amount of money: only then does the store's currency matter.
    pub fn has_amounts(&self) -> bool {
        self.amounts().next().is_some()
    }

    /// Why the terms cannot be given to a store keeping its prices in `shop_currency`: a store
    /// takes an amount as that many units of its own currency, so 10.00 USD off at a EUR store
    /// would take 10.00 EUR off.
    pub fn currency_mismatch(&self, shop_currency: &str) -> Option<String> {
        let shop = shop_currency.trim();
        self.amounts()
            .find(|(_, money)| !money.currency.trim().eq_ignore_ascii_case(shop))
            .map(|(what, money)| {
                format!(
                    "the {what} is in {}, but the store's currency is {}: give the plan's amounts in {}",
                    money.currency,
                    shop.to_ascii_uppercase(),
                    shop.to_ascii_uppercase()
                )
            })
    }
}

impl DiscountUpdate {
    /// Whether the code itself changes (not only its case-insensitive twin or the terms).
    pub fn renames(&self) -> bool {
        !self.previous_code.eq_ignore_ascii_case(&self.discount.code)
    }
}

/// What the store did with one pushed code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The store holds the code now (or already held it for the same external ref).
    Created { store_discount_id: String },
    /// The store holds the code for something else.
    AlreadyExists { message: String },
    /// The store refused this one code (real stores throttle or reject single codes).
    Failed { message: String, retryable: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushResult {
    pub code: String,
    pub outcome: PushOutcome,
}

/// A code to deactivate at its store, with the ref it was pushed with when the caller knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToDisable {
    pub code: String,
    /// Empty: any discount of the code that the suite made.
    pub external_ref: String,
}

impl ToDisable {
    /// The code to deactivate, whichever of the suite's discounts holds it.
    pub fn any(code: &str) -> Self {
        ToDisable {
            code: code.to_owned(),
            external_ref: String::new(),
        }
    }

    /// Whether a discount whose name carries `marker` (see `mapping::marker_of`) is this code's:
    /// one the suite made (a marker), and when the ref is known, made for it. A brand's own name
    /// that ends in brackets ("Black Friday [VIP]"), or another code's discount of the same text,
    /// is not.
    pub fn owns(&self, marker: Option<&str>) -> bool {
        marker.is_some_and(|marker| self.external_ref.is_empty() || marker == self.external_ref)
    }
}

/// The codes of a disable call with their refs (`refs`: none, or one per code, each at most
/// as long as a push's).
pub fn disable_targets(codes: Vec<String>, refs: Vec<String>) -> Result<Vec<ToDisable>, Error> {
    if !refs.is_empty() && refs.len() != codes.len() {
        return Err(Error::invalid(
            "external_refs",
            format!("none, or one per code ({})", codes.len()),
        ));
    }
    if let Some(i) = refs
        .iter()
        .position(|r| r.chars().count() > MAX_EXTERNAL_REF)
    {
        return Err(Error::invalid(
            &format!("external_refs[{i}]"),
            format!("at most {MAX_EXTERNAL_REF} characters"),
        ));
    }
    let mut refs = refs.into_iter();
    Ok(codes
        .into_iter()
        .map(|code| ToDisable {
            code,
            external_ref: refs.next().unwrap_or_default(),
        })
        .collect())
}

/// What the store did with one code to disable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisableOutcome {
    /// Inactive at the store now (also when it already was).
    Disabled,
    NotFound {
        message: String,
    },
    /// The store refused this one code.
    Failed {
        message: String,
        retryable: bool,
    },
}

impl DisableOutcome {
    /// The store holds `code`, but not under a discount the suite made (the brand's own): a
    /// disable leaves it alone, since the suite's code of that text never reached the store.
    pub fn not_ours(code: &str) -> Self {
        DisableOutcome::NotFound {
            message: format!("the store's code {code} was not made by the suite: left alone"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisableResult {
    pub code: String,
    pub outcome: DisableOutcome,
}

/// Checks the size of a batch in `field` (`discounts` or `codes`).
pub fn validate_batch(field: &str, len: usize) -> Result<(), Error> {
    if (1..=MAX_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("must hold 1..={MAX_BATCH} items, got {len}"),
        ))
    }
}

/// Checks a code against what the provider's store accepts (`caps`): its length and characters.
pub fn validate_code(field: &str, code: &str, caps: &Capabilities) -> Result<(), Error> {
    let provider = caps.provider.as_str_name();
    if code.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let max = caps.max_code_length as usize;
    if code.len() > max {
        return Err(Error::invalid(
            field,
            format!("{provider} accepts codes of at most {max} characters"),
        ));
    }
    if let Some(bad) = code
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !caps.code_punctuation.contains(*c))
    {
        return Err(Error::invalid(
            field,
            format!(
                "{bad:?} is not allowed: {provider} accepts letters A-Z, digits and {:?}",
                caps.code_punctuation
            ),
        ));
    }
    Ok(())
}

/// Checks every discount of a push for the provider's store (`caps`). Errors name the field with
/// the discount's index, e.g. `discounts[1].code`.
pub fn validate_discounts(caps: &Capabilities, discounts: &[Discount]) -> Result<(), Error> {
    validate_batch("discounts", discounts.len())?;
    for (i, discount) in discounts.iter().enumerate() {
        validate_discount(&format!("discounts[{i}]"), discount, caps)?;
    }
    Ok(())
}

/// Checks every update of an UpdateDiscounts call for the provider's store (`caps`): the previous
/// code as a code of that store, the new discount as a push's. Errors name the field with the
/// update's index, e.g. `updates[3].previous_code` or `updates[3].discount.code`. A previous code
/// may appear once per call: two changes of one code at once have no order to apply them in.
pub fn validate_updates(caps: &Capabilities, updates: &[DiscountUpdate]) -> Result<(), Error> {
    validate_batch("updates", updates.len())?;
    let mut seen = std::collections::HashSet::with_capacity(updates.len());
    for (i, update) in updates.iter().enumerate() {
        let field = format!("updates[{i}].previous_code");
        validate_code(&field, &update.previous_code, caps)?;
        if !seen.insert(update.previous_code.to_ascii_lowercase()) {
            return Err(Error::invalid(
                &field,
                format!("{} is updated twice in one call", update.previous_code),
            ));
        }
        validate_discount(&format!("updates[{i}].discount"), &update.discount, caps)?;
    }
    Ok(())
}

/// Checks one discount; `prefix` names it in errors (`discounts[1]`, `updates[0].discount`).
fn validate_discount(prefix: &str, discount: &Discount, caps: &Capabilities) -> Result<(), Error> {
    let field = |name: &str| format!("{prefix}.{name}");
    validate_code(&field("code"), &discount.code, caps)?;
    let ref_len = discount.external_ref.chars().count();
    if ref_len == 0 || ref_len > MAX_EXTERNAL_REF {
        // Required: an empty ref would make every empty-ref push of a taken code look like a
        // retry, and two owners could share one code.
        return Err(Error::invalid(
            &field("external_ref"),
            format!("must be 1..={MAX_EXTERNAL_REF} characters"),
        ));
    }
    check_text(&discount.title, MAX_TITLE)
        .map_err(|message| Error::invalid(&field("title"), message))?;
    if let Some(group) = &discount.group {
        let len = group.group_ref.chars().count();
        if len > MAX_GROUP_REF
            || !group
                .group_ref
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid(
                &field("group_ref"),
                format!("at most {MAX_GROUP_REF} letters, digits, '-', '_' or '.'"),
            ));
        }
        check_text(&group.title, MAX_TITLE)
            .map_err(|message| Error::invalid(&field("group_title"), message))?;
    }
    validate_terms(&field, &discount.terms)
}

fn validate_terms(field: &impl Fn(&str) -> String, terms: &Terms) -> Result<(), Error> {
    match &terms.value {
        None => {
            return Err(Error::invalid(
                &field("value"),
                "set percent_bps or fixed: a store code needs a discount",
            ));
        }
        Some(DiscountValue::PercentBps(bps)) if !(1..=10_000).contains(bps) => {
            return Err(Error::invalid(
                &field("percent_bps"),
                "must be 1..=10000 basis points (2000 = 20 %)",
            ));
        }
        Some(DiscountValue::PercentBps(_)) => {}
        Some(DiscountValue::Fixed(money)) => validate_money(&field("fixed"), money)?,
    }
    if terms.usage_limit < 0 {
        return Err(Error::invalid(
            &field("usage_limit"),
            "must be 0 (no limit) or more",
        ));
    }
    if let Some(minimum) = &terms.minimum_purchase {
        validate_money(&field("minimum_purchase"), minimum)?;
    }
    for (name, ids) in [
        ("product_ids", &terms.product_ids),
        ("category_ids", &terms.category_ids),
    ] {
        if ids.len() > MAX_RESTRICTIONS {
            return Err(Error::invalid(
                &field(name),
                format!("at most {MAX_RESTRICTIONS} ids"),
            ));
        }
        if let Some(bad) = ids
            .iter()
            .position(|id| id.trim().is_empty() || id.len() > MAX_RESTRICTION_ID)
        {
            return Err(Error::invalid(
                &field(&format!("{name}[{bad}]")),
                format!("must be 1..={MAX_RESTRICTION_ID} characters"),
            ));
        }
    }
    if let (Some(starts), Some(ends)) = (terms.starts_at, terms.ends_at)
        && ends <= starts
    {
        return Err(Error::invalid(&field("ends_at"), "must be after starts_at"));
    }
    Ok(())
}

fn validate_money(field: &str, money: &Money) -> Result<(), Error> {
    if money.currency.len() != 3 || !money.currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Error::invalid(
            &format!("{field}.currency"),
            "must be an ISO 4217 code of three upper-case letters, like USD",
        ));
    }
    if money.amount_minor < 1 {
        return Err(Error::invalid(
            &format!("{field}.amount_minor"),
            "must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::domain::capabilities::capabilities;

    fn sandbox() -> Capabilities {
        capabilities(Provider::Sandbox).unwrap_or_else(|| panic!("sandbox has capabilities"))
    }

    fn discount(code: &str) -> Discount {
        Discount {
            code: code.to_owned(),
            external_ref: format!("ref-{code}"),
            title: "Summer 20 / creator 1".to_owned(),
            group: None,
            terms: Terms {
                value: Some(DiscountValue::PercentBps(2000)),
                usage_limit: 0,
                once_per_customer: false,
                minimum_purchase: None,
                product_ids: Vec::new(),
                category_ids: Vec::new(),
                starts_at: None,
                ends_at: None,
            },
        }
    }

    fn field_of(result: Result<(), Error>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_push() {
        assert!(
            validate_discounts(&sandbox(), &[discount("MIA25"), discount("JOSE-N_20")]).is_ok()
        );
    }

    #[test]
    fn names_the_field_and_index() {
        let caps = sandbox();
        let check =
            |second: Discount| field_of(validate_discounts(&caps, &[discount("A"), second]));
        assert_eq!(check(discount("")), "discounts[1].code");
        assert_eq!(check(discount("MIA.25")), "discounts[1].code");
        assert_eq!(check(discount("MÍA")), "discounts[1].code");
        assert_eq!(check(discount(&"A".repeat(65))), "discounts[1].code");
        let mut long_ref = discount("B");
        long_ref.external_ref = "r".repeat(101);
        assert_eq!(check(long_ref), "discounts[1].external_ref");
        let mut no_ref = discount("B");
        no_ref.external_ref.clear();
        assert_eq!(check(no_ref), "discounts[1].external_ref");
        let mut no_value = discount("B");
        no_value.terms.value = None;
        assert_eq!(check(no_value), "discounts[1].value");
        let mut too_much = discount("B");
        too_much.terms.value = Some(DiscountValue::PercentBps(10_001));
        assert_eq!(check(too_much), "discounts[1].percent_bps");
        let mut bad_currency = discount("B");
        bad_currency.terms.value = Some(DiscountValue::Fixed(Money {
            amount_minor: 500,
            currency: "usd".to_owned(),
        }));
        assert_eq!(check(bad_currency), "discounts[1].fixed.currency");
        let mut zero = discount("B");
        zero.terms.minimum_purchase = Some(Money {
            amount_minor: 0,
            currency: "EUR".to_owned(),
        });
        assert_eq!(check(zero), "discounts[1].minimum_purchase.amount_minor");
        let mut blank_product = discount("B");
        blank_product.terms.product_ids = vec!["p1".to_owned(), " ".to_owned()];
        assert_eq!(check(blank_product), "discounts[1].product_ids[1]");
        let mut backwards = discount("B");
        backwards.terms.starts_at = chrono::DateTime::from_timestamp(2_000_000_000, 0);
        backwards.terms.ends_at = chrono::DateTime::from_timestamp(1_000_000_000, 0);
        assert_eq!(check(backwards), "discounts[1].ends_at");
        let mut bad_group = discount("B");
        bad_group.group = Some(DiscountGroup {
            group_ref: "plan 5]".to_owned(),
            title: "Summer".to_owned(),
        });
        assert_eq!(check(bad_group), "discounts[1].group_ref");
    }

    #[test]
    fn codes_share_a_discount_only_without_per_code_limits() {
        let grouped = |code: &str| {
            let mut d = discount(code);
            d.group = Some(DiscountGroup {
                group_ref: "plan-5".to_owned(),
                title: "Summer 20".to_owned(),
            });
            d
        };
        let key = grouped("A").shared_key();
        assert!(
            key.as_deref()
                .is_some_and(|k| k.starts_with("shared plan-5 "))
        );
        assert_eq!(
            key,
            grouped("B").shared_key(),
            "one key for one plan's terms"
        );
        let mut other_terms = grouped("C");
        other_terms.terms.value = Some(DiscountValue::PercentBps(1500));
        assert_ne!(other_terms.shared_key(), key, "other terms, other discount");
        let mut limited = grouped("D");
        limited.terms.usage_limit = 10;
        assert_eq!(limited.shared_key(), None);
        let mut once = grouped("E");
        once.terms.once_per_customer = true;
        assert_eq!(once.shared_key(), None);
        assert_eq!(discount("F").shared_key(), None, "no group, no sharing");
    }

    #[test]
    fn bounds_the_batch() {
        let caps = sandbox();
        assert_eq!(field_of(validate_discounts(&caps, &[])), "discounts");
        let many: Vec<_> = (0..=MAX_BATCH)
            .map(|i| discount(&format!("C{i}")))
            .collect();
        assert_eq!(field_of(validate_discounts(&caps, &many)), "discounts");
        assert!(validate_discounts(&caps, &many[..MAX_BATCH]).is_ok());
    }

    fn update(previous: &str, code: &str) -> DiscountUpdate {
        DiscountUpdate {
            previous_code: previous.to_owned(),
            discount: discount(code),
        }
    }

    #[test]
    fn updates_name_the_field_and_index() {
        let caps = sandbox();
        assert!(
            validate_updates(&caps, &[update("MIA20", "MIA25"), update("JOSE", "JOSE")]).is_ok()
        );
        let check =
            |second: DiscountUpdate| field_of(validate_updates(&caps, &[update("A", "B"), second]));
        assert_eq!(check(update("", "C")), "updates[1].previous_code");
        assert_eq!(check(update("C.1", "C")), "updates[1].previous_code");
        assert_eq!(
            check(update("a", "C")),
            "updates[1].previous_code",
            "A twice"
        );
        assert_eq!(check(update("C", "")), "updates[1].discount.code");
        let mut no_ref = update("C", "D");
        no_ref.discount.external_ref.clear();
        assert_eq!(check(no_ref), "updates[1].discount.external_ref");
        let mut too_much = update("C", "D");
        too_much.discount.terms.value = Some(DiscountValue::PercentBps(10_001));
        assert_eq!(check(too_much), "updates[1].discount.percent_bps");
        assert_eq!(field_of(validate_updates(&caps, &[])), "updates");
    }

    #[test]
    fn a_change_of_case_is_not_a_rename() {
        assert!(!update("mia20", "MIA20").renames());
        assert!(update("MIA20", "MIA25").renames());
    }

    #[test]
    fn punctuation_follows_the_provider() {
        let caps = sandbox();
        assert!(validate_code("codes[0]", "A-B_C", &caps).is_ok());
        assert_eq!(
            field_of(validate_code("codes[0]", "A B", &caps)),
            "codes[0]"
        );
    }
}
