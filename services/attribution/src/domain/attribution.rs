//! The attribution rules: who gets an order, how an order with several creators' codes is
//! divided, what commission is owed, and how a conversion follows its order (payment, partial
//! and full refunds, cancellation, approval after the holding period). Pure functions: the
//! projection applies them inside the stream consumer's transaction.

use chrono::{DateTime, Duration, Utc};

/// How long an order that carries codes or a click id nobody is known for waits for them (the
/// streams of codes, clicks and orders are independent, so an order may arrive first). Its
/// waiting starts again with each new state of the order; after this it is forgotten: a code
/// is minted before anyone can order with it, so a month covers any stream falling behind.
pub const PENDING_WAIT: Duration = Duration::days(30);

/// How a conversion was attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Code,
    Click,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Code => "code",
            Method::Click => "click",
        }
    }

    pub fn parse(text: &str) -> Method {
        if text == "click" {
            Method::Click
        } else {
            Method::Code
        }
    }
}

/// How an order was divided among creators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitRule {
    /// One creator: the whole order.
    None,
    /// Each creator gets the lines their code discounted (shared lines equally).
    Lines,
    /// The store did not say which code discounted which line: equal shares.
    Equal,
}

impl SplitRule {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitRule::None => "none",
            SplitRule::Lines => "lines",
            SplitRule::Equal => "equal",
        }
    }
}

/// The order's state at the store, as far as attribution cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    Created,
    Paid,
    PartiallyRefunded,
    Refunded,
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Paid => "paid",
            OrderState::PartiallyRefunded => "partially_refunded",
            OrderState::Refunded => "refunded",
            OrderState::Cancelled => "cancelled",
        }
    }

    /// The state [`Self::as_str`] names.
    pub fn parse(text: &str) -> Option<OrderState> {
        Some(match text {
            "created" => OrderState::Created,
            "paid" => OrderState::Paid,
            "partially_refunded" => OrderState::PartiallyRefunded,
            "refunded" => OrderState::Refunded,
            "cancelled" => OrderState::Cancelled,
            _ => return None,
        })
    }

    /// Orders only move forward: a state of lower rank arriving late changes nothing.
    pub fn rank(self) -> i32 {
        match self {
            OrderState::Created => 1,
            OrderState::Paid => 2,
            OrderState::PartiallyRefunded => 3,
            OrderState::Refunded | OrderState::Cancelled => 4,
        }
    }

    /// Nothing is owed any more.
    pub fn is_void(self) -> bool {
        matches!(self, OrderState::Refunded | OrderState::Cancelled)
    }

    pub fn is_paid(self) -> bool {
        matches!(self, OrderState::Paid | OrderState::PartiallyRefunded)
    }
}

/// What is known of one state of an order: how far it moved ([`OrderState::rank`]), what was
/// refunded, its total, and when the store last changed it (when it says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderVersion {
    pub rank: i32,
    pub refunded_minor: i64,
    pub total_minor: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Whether an order update is newer than what a conversion (or a waiting order) saw: a later
/// state, more refunded, or, at the same state and refund, an edit of the total (see
/// [`reprices`]).
pub fn is_newer(seen: &OrderVersion, update: &OrderVersion) -> bool {
    if update.rank != seen.rank {
        return update.rank > seen.rank;
    }
    if update.refunded_minor != seen.refunded_minor {
        return update.refunded_minor > seen.refunded_minor;
    }
    reprices(seen, update)
}

/// Whether an update's total, when it differs from the one seen, is the order's newer one: an
/// edit the store made no earlier than the version seen (stores give their times to the second,
/// so two edits within one second are told apart by arrival). When either side's time is
/// unknown the later arrival wins, as for the order's other changes.
pub fn reprices(seen: &OrderVersion, update: &OrderVersion) -> bool {
    update.total_minor != seen.total_minor
        && match (seen.updated_at, update.updated_at) {
            (Some(seen), Some(update)) => update >= seen,
            _ => true,
        }
}

/// One line of an order, as the split needs it.
#[derive(Clone, Debug)]
pub struct Line {
    /// Price × quantity minus the line's discounts.
    pub net_minor: i64,
    pub discount_minor: i64,
    /// The order's codes that discounted the line, lower-cased.
    pub codes: Vec<String>,
}

/// A creator claiming the order, with the code that matched (lower-cased; empty for a click).
#[derive(Clone, Debug)]
pub struct Claimant {
    pub creator_id: i64,
    pub code: String,
}

/// One creator's part of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub revenue_minor: i64,
    pub discount_minor: i64,
    /// Of the order's discounted subtotal, in basis points.
    pub share_bps: i32,
}

/// Divides an order (discounted subtotal `net_minor`, discount `discount_minor`) among
/// `claimants`, sorted by creator id. See [`SplitRule`] for the rule applied.
pub fn split(
    net_minor: i64,
    discount_minor: i64,
    lines: &[Line],
    claimants: &[Claimant],
) -> (SplitRule, Vec<Share>) {
    let n = claimants.len() as i64;
    if n <= 1 {
        return (
            SplitRule::None,
            vec![Share {
                revenue_minor: net_minor,
                discount_minor,
                share_bps: 10_000,
            }],
        );
    }
    let on_lines = claimants
        .iter()
        .all(|c| lines.iter().any(|line| line.codes.contains(&c.code)));
    if on_lines {
        let mut shares = vec![(0i64, 0i64); claimants.len()];
        for line in lines {
            let holders: Vec<usize> = claimants
                .iter()
                .enumerate()
                .filter(|(_, c)| line.codes.contains(&c.code))
                .map(|(i, _)| i)
                .collect();
            for (part, &i) in divide(line.net_minor, holders.len()).iter().zip(&holders) {
                shares[i].0 += part;
            }
            for (part, &i) in divide(line.discount_minor, holders.len())
                .iter()
                .zip(&holders)
            {
                shares[i].1 += part;
            }
        }
        let shares = with_bps(shares, net_minor);
        return (SplitRule::Lines, shares);
    }
    let revenue = divide(net_minor, claimants.len());
    let discount = divide(discount_minor, claimants.len());
    let shares = with_bps(revenue.into_iter().zip(discount).collect(), net_minor);
    (SplitRule::Equal, shares)
}

/// The shares of (revenue, discount) `parts` of an order of discounted subtotal `net_minor`,
/// each in basis points of it; of an order of no total (a 100 % code), equal basis points, so
/// that a fixed commission per order is shared, not lost.
fn with_bps(parts: Vec<(i64, i64)>, net_minor: i64) -> Vec<Share> {
    let equal = divide(10_000, parts.len());
    parts
        .into_iter()
        .zip(equal)
        .map(|((revenue, discount), equal)| Share {
            revenue_minor: revenue,
            discount_minor: discount,
            share_bps: if net_minor > 0 {
                bps(revenue, net_minor)
            } else {
                i32::try_from(equal).unwrap_or_default()
            },
        })
        .collect()
}

/// `amount` in `parts` parts; the remainder's minor units go to the first parts.
fn divide(amount: i64, parts: usize) -> Vec<i64> {
    if parts == 0 {
        return Vec::new();
    }
    let n = parts as i64;
    let (each, rest) = (amount.div_euclid(n), amount.rem_euclid(n));
    (0..n).map(|i| each + i64::from(i < rest)).collect()
}

fn bps(part: i64, whole: i64) -> i32 {
    if whole <= 0 {
        return 0;
    }
    (i128::from(part) * 10_000 / i128::from(whole)) as i32
}

/// `amount × numerator / denominator`, rounded down, without overflow.
pub fn scale(amount: i64, numerator: i64, denominator: i64) -> i64 {
    if denominator <= 0 {
        return 0;
    }
    (i128::from(amount) * i128::from(numerator) / i128::from(denominator)) as i64
}

/// A plan's commission rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommissionRule {
    /// Of the discounted subtotal, in basis points.
    PercentBps(i32),
    /// Per order, in its own currency (divided like the order when it is split).
    FixedPerOrder { amount_minor: i64, currency: String },
}

impl CommissionRule {
    /// The rule a plan's stored columns describe: a percentage if it has one, else a fixed amount
    /// with its currency; `None` when the plan pays no commission.
    pub fn from_columns(
        bps: Option<i32>,
        fixed_minor: Option<i64>,
        currency: Option<&str>,
    ) -> Option<CommissionRule> {
        match (bps, fixed_minor, currency) {
            (Some(bps), _, _) => Some(CommissionRule::PercentBps(bps)),
            (None, Some(amount_minor), Some(currency)) => Some(CommissionRule::FixedPerOrder {
                amount_minor,
                currency: currency.to_owned(),
            }),
            _ => None,
        }
    }
}

/// A plan's commission rules, oldest first, each with the time it took effect.
pub type CommissionHistory = Vec<(DateTime<Utc>, Option<CommissionRule>)>;

/// The rule an order placed at `ordered_at` earns: the last of the plan's rules (oldest first,
/// each with the time it took effect) that took effect by then, or the first one for an order
/// placed before any did. A change of commission applies to orders placed after it, never to
/// those placed before, however late their events arrive.
pub fn rule_in_effect(
    history: &[(DateTime<Utc>, Option<CommissionRule>)],
    ordered_at: DateTime<Utc>,
) -> Option<&CommissionRule> {
    history
        .iter()
        .rev()
        .find(|(from, _)| *from <= ordered_at)
        .or(history.first())
        .and_then(|(_, rule)| rule.as_ref())
}

/// How far a store's clock may run behind ours: an order a store says was placed this long
/// before a code got its text may still have used it.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Whether a code that has had its text since `since` (`None`: not known) may have been used
/// for an order placed at `ordered_at`. An order placed before the code had the text used
/// another code of that text at the store (the brand's own promotion, or one deleted since),
/// never the creator's: crediting it would pay for sales the creator did not drive.
pub fn had_text_then(since: Option<DateTime<Utc>>, ordered_at: DateTime<Utc>) -> bool {
    since.is_none_or(|since| ordered_at + CLOCK_SKEW >= since)
}

/// Who held a code's text when an order was placed, among `holders`: codes that had the text
/// until a brand renamed them (`Some(until)`) and codes with the text now (`None`). A former
/// holder whose rename came after the order wins: the text was theirs then, even if it has been
/// given to someone else since. A text is one code's at a time, so when several lost it after
/// the order, the one that lost it first held it then (the others got it later).
pub fn holders_at<T: Copy>(
    holders: &[(T, Option<DateTime<Utc>>)],
    ordered_at: DateTime<Utc>,
) -> Vec<T> {
    let first_until = holders
        .iter()
        .filter_map(|(_, until)| *until)
        .filter(|until| ordered_at < *until)
        .min();
    if let Some(first_until) = first_until {
        return holders
            .iter()
            .filter(|(_, until)| *until == Some(first_until))
            .map(|(holder, _)| *holder)
            .collect();
    }
    holders
        .iter()
        .filter(|(_, until)| until.is_none())
        .map(|(holder, _)| *holder)
        .collect()
}

/// The commission on one share of an order: (amount, currency).
pub fn commission(
    rule: Option<&CommissionRule>,
    share: &Share,
    order_currency: &str,
) -> (i64, String) {
    match rule {
        Some(CommissionRule::PercentBps(bps)) => (
            scale(share.revenue_minor, i64::from(*bps), 10_000),
            order_currency.to_owned(),
        ),
        Some(CommissionRule::FixedPerOrder {
            amount_minor,
            currency,
        }) => (
            scale(*amount_minor, i64::from(share.share_bps), 10_000),
            currency.clone(),
        ),
        None => (0, order_currency.to_owned()),
    }
}

/// The commission on each share of an order (`rules[i]` for `shares[i]`, the order's discounted
/// subtotal `net_minor`): as [`commission`] gives it, except that the shares earning under one
/// rule share out what the revenue they claim earns under it (a fixed amount per order in
/// proportion to each share's revenue; a percentage of their revenue together), the minor
/// units rounding leaves going to the first shares, so that the parts add up to the whole.
pub fn commissions(
    rules: &[Option<&CommissionRule>],
    shares: &[Share],
    net_minor: i64,
    order_currency: &str,
) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = rules
        .iter()
        .zip(shares)
        .map(|(rule, share)| commission(*rule, share, order_currency))
        .collect();
    // What the shares `group` earn under `rule` together: a fixed amount in proportion to the
    // revenue they claim, or, of an order of no total (a 100 % code), to their basis points.
    let earned = |rule: &CommissionRule, group: &[usize]| {
        let revenue: i64 = group.iter().map(|&i| shares[i].revenue_minor).sum();
        match rule {
            CommissionRule::PercentBps(bps) => scale(revenue, i64::from(*bps), 10_000),
            CommissionRule::FixedPerOrder { amount_minor, .. } if net_minor > 0 => {
                scale(*amount_minor, revenue, net_minor)
            }
            CommissionRule::FixedPerOrder { amount_minor, .. } => {
                let bps: i64 = group.iter().map(|&i| i64::from(shares[i].share_bps)).sum();
                scale(*amount_minor, bps, 10_000)
            }
        }
    };
    let mut divided = vec![false; out.len()];
    for first in 0..out.len() {
        let Some(rule) = rules[first] else {
            continue;
        };
        if divided[first] {
            continue;
        }
        let group: Vec<usize> = (first..out.len())
            .filter(|&i| rules[i] == Some(rule))
            .collect();
        let mut given = 0;
        for &i in &group {
            divided[i] = true;
            out[i].0 = earned(rule, &[i]);
            given += out[i].0;
        }
        let mut rest = earned(rule, &group) - given;
        for &i in &group {
            if rest <= 0 {
                break;
            }
            out[i].0 += 1;
            rest -= 1;
        }
    }
    out
}

/// When a click attributes an order: placed at most `window_days` after the click (and not
/// before it, allowing five minutes of clock difference between the store and us).
pub fn click_in_window(
    clicked_at: DateTime<Utc>,
    ordered_at: DateTime<Utc>,
    window_days: i32,
) -> bool {
    let window = Duration::days(i64::from(if window_days > 0 { window_days } else { 30 }));
    ordered_at >= clicked_at - Duration::minutes(5) && ordered_at <= clicked_at + window
}

/// Where a conversion stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Reversed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Reversed => "reversed",
        }
    }

    pub fn parse(text: &str) -> Status {
        match text {
            "approved" => Status::Approved,
            "reversed" => Status::Reversed,
            _ => Status::Pending,
        }
    }
}

/// The money of a conversion that refunds change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amounts {
    pub status: Status,
    pub revenue_minor: i64,
    pub discount_minor: i64,
    pub commission_minor: i64,
    pub adjusted_revenue_minor: i64,
    pub adjusted_commission_minor: i64,
    pub approve_at: Option<DateTime<Utc>>,
}

/// What follows for a conversion from its order's new state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    pub amounts: Amounts,
    /// After approval: an adjustment (revenue, commission) to record, never a rewrite.
    pub adjustment: Option<(i64, i64)>,
}

/// What a conversion is worth at a state of its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worth {
    pub revenue_minor: i64,
    pub discount_minor: i64,
    pub commission_minor: i64,
    /// The commission's currency (a fixed commission's own may differ from the order's).
    pub commission_currency: String,
}

/// What each of an order's creators' conversions is worth at `state`, with `refunded_minor` of
/// `order_total_minor` refunded: their worth before any refund (`bases`) scaled by what is left
/// of the order (nothing once it is void; the discount stays until then). As for the split, the
/// minor units rounding leaves go to the first ones, so that the parts add up to what the whole
/// is worth (the commissions per currency).
pub fn worth(
    bases: &[Worth],
    state: OrderState,
    refunded_minor: i64,
    order_total_minor: i64,
) -> Vec<Worth> {
    // The share of the order left: none once void; all of it for an order of no total (a
    // 100 % code: nothing can be refunded of it, and a fixed commission is still owed).
    let (remaining, whole) = if state.is_void() {
        (0, 1)
    } else if order_total_minor <= 0 {
        (1, 1)
    } else {
        (
            (order_total_minor - refunded_minor).max(0),
            order_total_minor,
        )
    };
    let revenue: Vec<i64> = bases.iter().map(|b| b.revenue_minor).collect();
    let revenue = scale_parts(&revenue, remaining, whole);
    let mut commission: Vec<i64> = bases.iter().map(|b| b.commission_minor).collect();
    let mut currencies: Vec<&str> = bases
        .iter()
        .map(|b| b.commission_currency.as_str())
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    for currency in currencies {
        let of: Vec<usize> = (0..bases.len())
            .filter(|&i| bases[i].commission_currency == currency)
            .collect();
        let parts: Vec<i64> = of.iter().map(|&i| commission[i]).collect();
        for (&i, scaled) in of.iter().zip(scale_parts(&parts, remaining, whole)) {
            commission[i] = scaled;
        }
    }
    bases
        .iter()
        .zip(revenue.into_iter().zip(commission))
        .map(|(base, (revenue_minor, commission_minor))| Worth {
            revenue_minor,
            discount_minor: if state.is_void() {
                0
            } else {
                base.discount_minor
            },
            commission_minor,
            commission_currency: base.commission_currency.clone(),
        })
        .collect()
}

/// Each of `parts` × `numerator` / `denominator`, rounded down, then a minor unit more for those
/// rounding cut the most (the first of equals first) until they add up to their sum scaled the
/// same way.
fn scale_parts(parts: &[i64], numerator: i64, denominator: i64) -> Vec<i64> {
    if denominator <= 0 {
        return vec![0; parts.len()];
    }
    let mut scaled: Vec<i64> = parts
        .iter()
        .map(|&part| scale(part, numerator, denominator))
        .collect();
    let rest = scale(parts.iter().sum(), numerator, denominator) - scaled.iter().sum::<i64>();
    let cut = |i: usize| i128::from(parts[i]) * i128::from(numerator) % i128::from(denominator);
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cut(i)));
    for &i in order.iter().take(usize::try_from(rest).unwrap_or(0)) {
        scaled[i] += 1;
    }
    scaled
}

/// The conversion after its order moved to `state`, where it is worth `worth` (see [`worth`]),
/// seen at `seen_at`. Paid orders get their approval time (`seen_at` + holding period);
/// approval itself happens when that time comes ([`approve`]). A conversion whose approval was
/// due before the new state was seen is approved first (the approver runs a little behind the
/// clock), so a refund after the due date is an adjustment, as it would have been had the
/// approver been on time. The other way round, a conversion approved before its order's state
/// was applied, though the store's state was seen before the approval was due (the approver does
/// not wait for the order stream: a consumer behind or restarted applies it late), follows that
/// state as the pending conversion it was then: a cancellation or full refund reverses it, as
/// it would have had the stream been on time.
pub fn follow(
    current: &Amounts,
    state: OrderState,
    worth: &Worth,
    seen_at: DateTime<Utc>,
    holding_days: i32,
) -> Followed {
    let unapproved = approved_too_early(current, seen_at);
    let current = unapproved.as_ref().unwrap_or(current);
    let approved = approve(current, seen_at);
    let current = approved.as_ref().unwrap_or(current);
    let approve_at = current.approve_at.or_else(|| {
        state
            .is_paid()
            .then(|| seen_at + Duration::days(i64::from(holding_days)))
    });
    match current.status {
        Status::Reversed => Followed {
            amounts: current.clone(),
            adjustment: None,
        },
        Status::Pending if state.is_void() => Followed {
            amounts: Amounts {
                status: Status::Reversed,
                revenue_minor: 0,
                discount_minor: 0,
                approve_at: None,
                ..current.clone()
            },
            adjustment: None,
        },
        Status::Pending => Followed {
            amounts: Amounts {
                revenue_minor: worth.revenue_minor,
                discount_minor: worth.discount_minor,
                commission_minor: worth.commission_minor,
                approve_at,
                ..current.clone()
            },
            adjustment: None,
        },
        Status::Approved => {
            // What is owed now, against what was approved plus earlier adjustments.
            let revenue_delta =
                worth.revenue_minor - (current.revenue_minor + current.adjusted_revenue_minor);
            let commission_delta = worth.commission_minor
                - (current.commission_minor + current.adjusted_commission_minor);
            let adjustment = (revenue_delta != 0 || commission_delta != 0)
                .then_some((revenue_delta, commission_delta));
            Followed {
                amounts: Amounts {
                    // The discount shown follows the order (none once it is void), as the
                    // daily figures count it.
                    discount_minor: worth.discount_minor,
                    adjusted_revenue_minor: current.adjusted_revenue_minor + revenue_delta,
                    adjusted_commission_minor: current.adjusted_commission_minor + commission_delta,
                    ..current.clone()
                },
                adjustment,
            }
        }
    }
}

/// An approved conversion whose approval was not yet due at `seen_at`, as the pending one it
/// was then; `None` for any other (one adjusted since its approval was approved in time).
fn approved_too_early(current: &Amounts, seen_at: DateTime<Utc>) -> Option<Amounts> {
    let untouched = current.adjusted_revenue_minor == 0 && current.adjusted_commission_minor == 0;
    match (current.status, current.approve_at) {
        (Status::Approved, Some(at)) if seen_at < at && untouched => Some(Amounts {
            status: Status::Pending,
            ..current.clone()
        }),
        _ => None,
    }
}

/// A pending conversion whose holding period is over is approved.
pub fn approve(current: &Amounts, now: DateTime<Utc>) -> Option<Amounts> {
    match (current.status, current.approve_at) {
        (Status::Pending, Some(at)) if at <= now => Some(Amounts {
            status: Status::Approved,
            ..current.clone()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(creator_id: i64, code: &str) -> Claimant {
        Claimant {
            creator_id,
            code: code.to_owned(),
        }
    }

    fn line(net: i64, discount: i64, codes: &[&str]) -> Line {
        Line {
            net_minor: net,
            discount_minor: discount,
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn one_creator_takes_the_whole_order() {
        let (rule, shares) = split(9_000, 1_000, &[], &[claim(1, "anna10")]);
        assert_eq!(rule, SplitRule::None);
        assert_eq!(shares[0].revenue_minor, 9_000);
        assert_eq!(shares[0].share_bps, 10_000);
    }

    #[test]
    fn several_creators_split_by_lines_when_the_store_says() {
        let lines = [
            line(6_000, 600, &["anna10"]),
            line(3_000, 300, &["bob10"]),
            line(1_001, 0, &["anna10", "bob10"]),
            line(500, 0, &[]),
        ];
        let (rule, shares) = split(
            10_501,
            900,
            &lines,
            &[claim(1, "anna10"), claim(2, "bob10")],
        );
        assert_eq!(rule, SplitRule::Lines);
        assert_eq!(shares[0].revenue_minor, 6_000 + 501);
        assert_eq!(shares[1].revenue_minor, 3_000 + 500);
        assert_eq!(
            (shares[0].discount_minor, shares[1].discount_minor),
            (600, 300)
        );
    }

    #[test]
    fn otherwise_equally_with_the_remainder_to_the_first() {
        let (rule, shares) = split(1_001, 11, &[], &[claim(1, "a"), claim(2, "b")]);
        assert_eq!(rule, SplitRule::Equal);
        assert_eq!(
            shares.iter().map(|s| s.revenue_minor).collect::<Vec<_>>(),
            vec![501, 500]
        );
        assert_eq!(shares.iter().map(|s| s.discount_minor).sum::<i64>(), 11);
    }

    #[test]
    fn commissions_follow_the_plan_rule() {
        let share = Share {
            revenue_minor: 9_000,
            discount_minor: 1_000,
            share_bps: 5_000,
        };
        assert_eq!(
            commission(Some(&CommissionRule::PercentBps(1_500)), &share, "EUR"),
            (1_350, "EUR".to_owned())
        );
        let fixed = CommissionRule::FixedPerOrder {
            amount_minor: 500,
            currency: "USD".to_owned(),
        };
        assert_eq!(
            commission(Some(&fixed), &share, "EUR"),
            (250, "USD".to_owned())
        );
        assert_eq!(commission(None, &share, "EUR"), (0, "EUR".to_owned()));
    }

    #[test]
    fn clicks_attribute_within_their_window() {
        let clicked = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        assert!(click_in_window(clicked, clicked + Duration::days(29), 30));
        assert!(!click_in_window(clicked, clicked + Duration::days(31), 30));
        assert!(!click_in_window(clicked, clicked + Duration::days(31), 0));
        assert!(click_in_window(clicked, clicked + Duration::days(59), 60));
        assert!(!click_in_window(clicked, clicked - Duration::hours(1), 30));
    }

    /// What the conversion of `pending(8_000, 800)` (the whole of an order of 10,000 with a
    /// discount of 100) is worth with `refunded` refunded at `state`.
    fn owed(state: OrderState, refunded: i64) -> Worth {
        let base = Worth {
            revenue_minor: 8_000,
            discount_minor: 100,
            commission_minor: 800,
            commission_currency: "EUR".to_owned(),
        };
        worth(&[base], state, refunded, 10_000).remove(0)
    }

    /// The conversion of [`owed`]'s order after it moved to `state` with `refunded` refunded,
    /// seen at `seen_at`.
    fn followed(
        current: &Amounts,
        state: OrderState,
        refunded: i64,
        seen_at: DateTime<Utc>,
        holding_days: i32,
    ) -> Followed {
        follow(
            current,
            state,
            &owed(state, refunded),
            seen_at,
            holding_days,
        )
    }

    /// `pending(8_000, 800)` followed to its order's payment, and when that was, for a plan
    /// holding commissions `days`.
    fn paid_holding(days: i32) -> (DateTime<Utc>, Followed) {
        let paid_at = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        let paid = follow(
            &pending(8_000, 800),
            OrderState::Paid,
            &owed(OrderState::Paid, 0),
            paid_at,
            days,
        );
        (paid_at, paid)
    }

    fn pending(revenue: i64, commission: i64) -> Amounts {
        Amounts {
            status: Status::Pending,
            revenue_minor: revenue,
            discount_minor: 100,
            commission_minor: commission,
            adjusted_revenue_minor: 0,
            adjusted_commission_minor: 0,
            approve_at: None,
        }
    }

    #[test]
    fn a_state_seen_before_an_approval_was_due_and_applied_after_it_follows_the_pending_conversion()
    {
        let (paid_at, paid) = paid_holding(1);
        let due = paid_at + Duration::days(1);
        // The approver ran while the order stream was behind.
        let early = approve(&paid.amounts, due).unwrap_or_else(|| panic!("due"));
        assert_eq!(early.status, Status::Approved);
        // A cancellation the store sent an hour before the due time: nothing is owed.
        let cancelled = followed(
            &early,
            OrderState::Cancelled,
            0,
            due - Duration::hours(1),
            1,
        );
        assert_eq!(cancelled.amounts.status, Status::Reversed);
        assert_eq!(cancelled.adjustment, None);
        // A partial refund then: the pending amounts change, and the approval comes again.
        let partial = followed(
            &early,
            OrderState::PartiallyRefunded,
            2_500,
            due - Duration::hours(1),
            1,
        );
        assert_eq!(
            (
                partial.amounts.status,
                partial.amounts.commission_minor,
                partial.adjustment
            ),
            (Status::Pending, 600, None)
        );
        assert_eq!(
            approve(&partial.amounts, due).map(|a| a.status),
            Some(Status::Approved)
        );
        // Seen after the due time, it is an adjustment of the approval.
        let late = followed(
            &early,
            OrderState::Cancelled,
            0,
            due + Duration::hours(1),
            1,
        );
        assert_eq!(late.amounts.status, Status::Approved);
        assert_eq!(late.adjustment, Some((-8_000, -800)));
    }

    #[test]
    fn refunds_and_cancellations_before_approval() {
        let (paid_at, paid) = paid_holding(14);
        assert_eq!(paid.amounts.approve_at, Some(paid_at + Duration::days(14)));
        let partial = followed(
            &paid.amounts,
            OrderState::PartiallyRefunded,
            2_500,
            paid_at,
            14,
        );
        assert_eq!(
            (
                partial.amounts.revenue_minor,
                partial.amounts.commission_minor
            ),
            (6_000, 600)
        );
        assert_eq!(partial.adjustment, None);
        let full = followed(&partial.amounts, OrderState::Refunded, 10_000, paid_at, 14);
        assert_eq!(full.amounts.status, Status::Reversed);
        assert_eq!(
            full.amounts.commission_minor, 600,
            "the reversed commission is kept for the record"
        );
        let after = followed(&full.amounts, OrderState::Paid, 0, paid_at, 14);
        assert_eq!(after.amounts, full.amounts, "reversed stays reversed");
    }

    #[test]
    fn refunds_after_approval_are_adjustments() {
        let (paid_at, paid) = paid_holding(0);
        let approved = approve(&paid.amounts, paid_at).unwrap_or_else(|| panic!("due"));
        assert_eq!(approved.status, Status::Approved);
        let partial = followed(&approved, OrderState::PartiallyRefunded, 5_000, paid_at, 0);
        assert_eq!(partial.adjustment, Some((-4_000, -400)));
        assert_eq!(
            (
                partial.amounts.revenue_minor,
                partial.amounts.commission_minor
            ),
            (8_000, 800)
        );
        assert_eq!(partial.amounts.discount_minor, 100);
        let full = followed(&partial.amounts, OrderState::Refunded, 10_000, paid_at, 0);
        assert_eq!(full.adjustment, Some((-4_000, -400)));
        assert_eq!(full.amounts.status, Status::Approved);
        assert_eq!(
            full.amounts.discount_minor, 0,
            "no discount of a void order"
        );
        assert_eq!(full.amounts.adjusted_commission_minor, -800);
        assert!(
            approve(&pending(1, 1), paid_at).is_none(),
            "unpaid orders are not approved"
        );
    }

    #[test]
    fn a_refund_shared_by_creators_takes_back_what_the_whole_loses() {
        let base = |revenue: i64, commission: i64, currency: &str| Worth {
            revenue_minor: revenue,
            discount_minor: 10,
            commission_minor: commission,
            commission_currency: currency.to_owned(),
        };
        // Three thirds of 10,000 (10 % each), and a fixed 5.00 USD shared by two of them.
        let bases = [
            base(3_334, 334, "EUR"),
            base(3_333, 333, "EUR"),
            base(3_333, 250, "USD"),
            base(0, 250, "USD"),
        ];
        let half = worth(&bases, OrderState::PartiallyRefunded, 5_000, 10_000);
        assert_eq!(
            half.iter().map(|w| w.revenue_minor).collect::<Vec<_>>(),
            [1_667, 1_667, 1_666, 0],
            "5,000 left, not 4,999"
        );
        assert_eq!(
            half.iter().map(|w| w.commission_minor).collect::<Vec<_>>(),
            [167, 166, 125, 125],
            "per currency: 333 of 667 EUR, 250 of 500 USD"
        );
        let third = worth(&bases[..3], OrderState::PartiallyRefunded, 6_667, 10_000);
        assert_eq!(
            third.iter().map(|w| w.revenue_minor).collect::<Vec<_>>(),
            [1_111, 1_111, 1_111],
            "3,333 left of 10,000: 1,111.2, 1,110.9 and 1,110.9"
        );
        assert!(half.iter().all(|w| w.discount_minor == 10));
        let void = worth(&bases, OrderState::Cancelled, 0, 10_000);
        assert!(
            void.iter()
                .all(|w| w.revenue_minor == 0 && w.commission_minor == 0 && w.discount_minor == 0)
        );
        let whole = worth(&bases, OrderState::Paid, 0, 10_000);
        assert_eq!(whole, bases);
        // An order of no total (a 100 % code) still owes its fixed commission, until void.
        let free = [base(0, 500, "USD")];
        assert_eq!(worth(&free, OrderState::Paid, 0, 0), free);
        assert_eq!(
            worth(&free, OrderState::Cancelled, 0, 0)[0].commission_minor,
            0
        );
    }

    #[test]
    fn a_refund_seen_after_the_approval_was_due_is_an_adjustment() {
        let (paid_at, paid) = paid_holding(14);
        // The approver has not run yet when the refund comes, a day after the due date.
        let refund_seen = paid_at + Duration::days(15);
        assert_eq!(paid.amounts.status, Status::Pending);
        let partial = followed(
            &paid.amounts,
            OrderState::PartiallyRefunded,
            5_000,
            refund_seen,
            14,
        );
        assert_eq!(partial.amounts.status, Status::Approved);
        assert_eq!(partial.adjustment, Some((-4_000, -400)));
        assert_eq!(
            (
                partial.amounts.commission_minor,
                partial.amounts.adjusted_commission_minor
            ),
            (800, -400)
        );
        // A refund seen the day before the due date still rewrites the pending conversion.
        let early = followed(
            &paid.amounts,
            OrderState::PartiallyRefunded,
            5_000,
            paid_at + Duration::days(13),
            14,
        );
        assert_eq!(early.amounts.status, Status::Pending);
        assert_eq!(
            (early.amounts.commission_minor, early.adjustment),
            (400, None)
        );
    }

    #[test]
    fn an_order_earns_the_commission_in_effect_when_it_was_placed() {
        use chrono::TimeZone;
        let at = |h: u32| {
            Utc.with_ymd_and_hms(2026, 11, 20, h, 0, 0)
                .single()
                .unwrap_or_default()
        };
        let history = vec![
            (
                DateTime::<Utc>::MIN_UTC,
                Some(CommissionRule::PercentBps(1_000)),
            ),
            (at(10), Some(CommissionRule::PercentBps(2_500))),
            (at(12), None),
        ];
        assert_eq!(
            rule_in_effect(&history, at(9)),
            Some(&CommissionRule::PercentBps(1_000))
        );
        assert_eq!(
            rule_in_effect(&history, at(10)),
            Some(&CommissionRule::PercentBps(2_500))
        );
        assert_eq!(rule_in_effect(&history, at(13)), None);
        // Before the first change known (a plan seen only from a later version).
        let later = vec![(at(10), Some(CommissionRule::PercentBps(700)))];
        assert_eq!(
            rule_in_effect(&later, at(8)),
            Some(&CommissionRule::PercentBps(700))
        );
        assert_eq!(rule_in_effect(&[], at(8)), None);
    }

    #[test]
    fn a_fixed_commission_split_among_creators_adds_up() {
        let fixed = CommissionRule::FixedPerOrder {
            amount_minor: 1000,
            currency: "EUR".to_owned(),
        };
        let other = CommissionRule::FixedPerOrder {
            amount_minor: 500,
            currency: "USD".to_owned(),
        };
        let share = |revenue_minor: i64, net: i64| Share {
            revenue_minor,
            discount_minor: 0,
            share_bps: bps(revenue_minor, net),
        };
        // Three equal shares of 10,000: 3334/3333/3333 bps, which alone pay 999.
        let equal = [
            share(3334, 10_000),
            share(3333, 10_000),
            share(3333, 10_000),
        ];
        let paid = commissions(&[Some(&fixed); 3], &equal, 10_000, "EUR");
        assert_eq!(
            paid.iter().map(|(amount, _)| *amount).collect::<Vec<_>>(),
            vec![334, 333, 333]
        );
        assert!(paid.iter().all(|(_, currency)| currency == "EUR"));
        // Two creators on lines worth 2/3 of the order (a line carries no code): 2/3 of the amount.
        let lines = [share(3333, 9999), share(3333, 9999)];
        let paid = commissions(&[Some(&fixed); 2], &lines, 9999, "EUR");
        assert_eq!(paid[0].0 + paid[1].0, 666);
        // Creators under different plans each take their own plan's amount on their share.
        let mixed = commissions(
            &[Some(&fixed), Some(&other)],
            &[share(5000, 10_000), share(5000, 10_000)],
            10_000,
            "EUR",
        );
        assert_eq!(
            mixed,
            vec![(500, "EUR".to_owned()), (250, "USD".to_owned())]
        );
        // A percentage too: 10 % of the whole order, not 3 × 10 % of a third rounded down.
        let percent = CommissionRule::PercentBps(1000);
        let paid = commissions(&[Some(&percent); 3], &equal, 10_000, "EUR");
        assert_eq!(
            paid.iter().map(|(amount, _)| *amount).collect::<Vec<_>>(),
            vec![334, 333, 333]
        );
        // An order of no total (a 100 % code) pays a fixed commission as a single creator's
        // would, shared equally; a percentage of nothing is nothing.
        let (_, free) = split(
            0,
            5_000,
            &[],
            &[claim(1, "a"), claim(2, "b"), claim(3, "c")],
        );
        assert_eq!(
            free.iter().map(|s| s.share_bps).collect::<Vec<_>>(),
            vec![3_334, 3_333, 3_333]
        );
        let paid = commissions(&[Some(&fixed); 3], &free, 0, "EUR");
        assert_eq!(
            paid.iter().map(|(amount, _)| *amount).sum::<i64>(),
            commission(
                Some(&fixed),
                &split(0, 5_000, &[], &[claim(1, "a")]).1[0],
                "EUR"
            )
            .0
        );
        assert_eq!(commissions(&[Some(&percent); 3], &free, 0, "EUR")[0].0, 0);
    }

    #[test]
    fn an_order_belongs_to_whoever_held_the_code_when_it_was_placed() {
        use chrono::TimeZone;
        let at = |h: u32| {
            Utc.with_ymd_and_hms(2026, 11, 20, h, 0, 0)
                .single()
                .unwrap_or_default()
        };
        // Code 1 had the text until 10:00, when the brand renamed it; code 2 has it since.
        let holders = [(1, Some(at(10))), (2, None)];
        assert_eq!(holders_at(&holders, at(9)), vec![1]);
        assert_eq!(holders_at(&holders, at(11)), vec![2]);
        // Renamed, and nobody holds the text now: orders placed before still count.
        assert_eq!(holders_at(&[(1, Some(at(10)))], at(9)), vec![1]);
        assert!(holders_at(&[(1, Some(at(10)))], at(11)).is_empty());
        assert_eq!(holders_at(&[(3, None)], at(11)), vec![3]);
        // Code 1 had the text until 10:00, code 2 from then until 12:00, code 3 since: each
        // order belongs to the one code that held it when it was placed.
        let handed_on = [(2, Some(at(12))), (1, Some(at(10))), (3, None)];
        assert_eq!(holders_at(&handed_on, at(9)), vec![1]);
        assert_eq!(holders_at(&handed_on, at(11)), vec![2]);
        assert_eq!(holders_at(&handed_on, at(13)), vec![3]);
    }

    #[test]
    fn an_order_placed_before_a_code_had_its_text_is_not_the_codes() {
        use chrono::TimeZone;
        let minted = Utc
            .with_ymd_and_hms(2026, 11, 20, 10, 0, 0)
            .single()
            .unwrap_or_default();
        assert!(had_text_then(Some(minted), minted + Duration::hours(1)));
        // The store's clock a little behind ours.
        assert!(had_text_then(Some(minted), minted - Duration::minutes(4)));
        // Placed the day before: the brand's own promotion of that text.
        assert!(!had_text_then(Some(minted), minted - Duration::days(1)));
        assert!(
            had_text_then(None, minted - Duration::days(1)),
            "not known: no bound"
        );
    }
}
