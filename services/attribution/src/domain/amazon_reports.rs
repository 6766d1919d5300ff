//! Amazon Attribution report rows as a creator's sales: Amazon reports attributed purchases and
//! sales per tag and day (no orders), so the commission is figured on the day's totals, and
//! approved once Amazon no longer revises the day.
//!
//! A row's day is the advertiser profile's calendar day (Amazon reports in the profile's time
//! zone). It is kept as that day everywhere (the daily figures, `approve_on`): a day's totals
//! cannot be split into UTC days. The profile's time zone is not known here, so comparing a
//! profile day with the clock uses the day every time zone has reached ([`payable_through`]).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};

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

/// The last profile day whose commission may be approved at `now`: the day before UTC's today,
/// which every time zone (UTC-12 to UTC+14) has reached. The gateway's importer takes a day
/// again until UTC's today is [`REVISION_DAYS`] after it, so a day is approved only after its
/// last import.
pub fn payable_through(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive() - Duration::days(1)
}

/// When a commission due on the profile day `approve_on` becomes payable: the first instant at
/// which [`payable_through`] reaches it.
pub fn payable_at(approve_on: NaiveDate) -> DateTime<Utc> {
    (approve_on + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc()
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

    #[test]
    fn a_profile_day_is_payable_once_every_time_zone_has_reached_it() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let due = NaiveDate::from_ymd_opt(2025, 3, 15).unwrap_or_default();
        // 2025-03-15 10:00 UTC is still 2025-03-14 in Honolulu or Baker Island: not yet.
        assert!(payable_through(at("2025-03-15T10:00:00Z")) < due);
        assert!(payable_through(at("2025-03-15T23:59:59Z")) < due);
        assert_eq!(payable_through(at("2025-03-16T00:00:00Z")), due);
        assert_eq!(payable_at(due), at("2025-03-16T00:00:00Z"));
    }
}
