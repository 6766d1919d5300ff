//! Amazon Attribution report rows as a creator's sales: Amazon reports attributed purchases and
//! sales per tag and day (no orders), so the commission is figured on the day's totals, and
//! approved once Amazon no longer revises the day.

use chrono::{Duration, NaiveDate};

use super::attribution::{CommissionRule, scale};

/// Amazon revises a day's figures for this long (its 14-day attribution window).
pub const REVISION_DAYS: i64 = 14;

/// The commission on a day's attributed purchases and sales (amount, currency): the plan's
/// percent of the sales, or its fixed amount per order times the purchases.
pub fn commission(
    rule: Option<&CommissionRule>,
    purchases: i64,
    sales_minor: i64,
    currency: &str,
) -> (i64, String) {
    match rule {
        Some(CommissionRule::PercentBps(bps)) => (
            scale(sales_minor, i64::from(*bps), 10_000),
            currency.to_owned(),
        ),
        Some(CommissionRule::FixedPerOrder {
            amount_minor,
            currency,
        }) => (amount_minor.saturating_mul(purchases), currency.clone()),
        None => (0, currency.to_owned()),
    }
}

/// When a day's commission is approved: once Amazon no longer revises the day, and the plan's
/// holding period (counted from the day) is over.
pub fn approve_on(day: NaiveDate, holding_days: i32) -> NaiveDate {
    day + Duration::days(REVISION_DAYS.max(i64::from(holding_days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_is_the_plans_rule_on_the_days_totals() {
        let percent = CommissionRule::PercentBps(1000);
        assert_eq!(
            commission(Some(&percent), 3, 8_997, "USD"),
            (899, "USD".to_owned())
        );
        let fixed = CommissionRule::FixedPerOrder {
            amount_minor: 500,
            currency: "EUR".to_owned(),
        };
        assert_eq!(
            commission(Some(&fixed), 3, 8_997, "USD"),
            (1_500, "EUR".to_owned())
        );
        assert_eq!(commission(None, 3, 8_997, "USD"), (0, "USD".to_owned()));
    }

    #[test]
    fn approval_waits_for_amazons_revisions_and_the_holding_period() {
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap_or_default();
        assert_eq!(approve_on(day, 0).to_string(), "2025-03-15");
        assert_eq!(approve_on(day, 30).to_string(), "2025-03-31");
    }
}
