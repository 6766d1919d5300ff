//! Leaked-code detection: a code whose orders mostly arrive with no click on the creator's
//! links (shoppers found it elsewhere, e.g. on a coupon site), or whose orders on one day jump
//! far above its own history.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};

/// An order counts as clicked when the creator's links were clicked in this long before it.
pub const CLICK_LOOKBACK: TimeDelta = TimeDelta::days(30);

/// A code's orders so far and those with no click on the creator's links in the 30 days before.
pub const MIN_ORDERS: i64 = 10;
/// "Mostly": at least this share of orders had no click, in percent.
pub const WITHOUT_CLICK_PERCENT: i64 = 80;
/// A day counts as a spike at this many times the daily average of the 28 days before.
pub const SPIKE_FACTOR: i64 = 5;
/// Days of history a spike is measured against.
pub const BASELINE_DAYS: i64 = 28;

/// Evidence of orders arriving without clicks, or `None` when the code looks normal.
pub fn orders_without_clicks(orders: i64, without_click: i64) -> Option<String> {
    (orders >= MIN_ORDERS && without_click * 100 >= orders * WITHOUT_CLICK_PERCENT).then(|| {
        format!(
            "{without_click} of {orders} orders had no click on the creator's links before them"
        )
    })
}

/// The daily average of the baseline, in thousandths of an order.
pub fn baseline_milli(orders_in_baseline: i64) -> i64 {
    orders_in_baseline * 1000 / BASELINE_DAYS
}

/// The first day of the baseline a spike on `day` is measured against.
pub fn baseline_start(day: NaiveDate) -> NaiveDate {
    day - Days::new(BASELINE_DAYS as u64)
}

/// A code's figures after counting one more order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeCounts {
    pub orders: i64,
    pub without_click: i64,
    pub day_orders: i64,
    pub baseline_orders: i64,
}

/// What leak detection knows of a code's orders: its totals, and its orders of the days it
/// has been told about (each day an order is counted on, and the baselines before them).
#[derive(Clone, Debug, Default)]
pub struct CodeHistory {
    orders: i64,
    without_click: i64,
    days: BTreeMap<NaiveDate, i64>,
}

impl CodeHistory {
    pub fn set_totals(&mut self, orders: i64, without_click: i64) {
        self.orders = orders;
        self.without_click = without_click;
    }

    pub fn set_day(&mut self, day: NaiveDate, orders: i64) {
        self.days.insert(day, orders);
    }

    /// Counts one more order on `day` and returns the code's figures.
    pub fn count(&mut self, day: NaiveDate, without_click: bool) -> CodeCounts {
        self.orders += 1;
        self.without_click += i64::from(without_click);
        *self.days.entry(day).or_default() += 1;
        CodeCounts {
            orders: self.orders,
            without_click: self.without_click,
            day_orders: self.days[&day],
            baseline_orders: self
                .days
                .range(baseline_start(day)..day)
                .map(|(_, n)| n)
                .sum(),
        }
    }
}

/// Whether an order placed `at` counts as clicked, from `latest`, the creator's latest click at
/// or before some moment not earlier than `at`: the answer, or `None` when that click came after
/// `at` (only the clicks before `at` can tell then).
pub fn clicked_from_latest(latest: Option<DateTime<Utc>>, at: DateTime<Utc>) -> Option<bool> {
    match latest {
        None => Some(false),
        Some(click) if click <= at => Some(click >= at - CLICK_LOOKBACK),
        Some(_) => None,
    }
}

/// Evidence of a spike on a day with `day_orders`, against the baseline average. A code with no
/// history has nothing to jump from (a code leaked at once shows as orders without clicks).
pub fn spike(day: &str, day_orders: i64, baseline_milli: i64) -> Option<String> {
    (baseline_milli > 0 && day_orders >= MIN_ORDERS && day_orders * 1000 > SPIKE_FACTOR * baseline_milli).then(
        || {
            format!(
                "{day_orders} orders on {day}, against {}.{:03} a day over the {BASELINE_DAYS} days before",
                baseline_milli / 1000,
                baseline_milli % 1000
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creators_latest_click_answers_for_the_orders_after_it() {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        assert_eq!(clicked_from_latest(None, at), Some(false), "never clicked");
        assert_eq!(
            clicked_from_latest(Some(at), at),
            Some(true),
            "clicked at the order"
        );
        assert_eq!(
            clicked_from_latest(Some(at - CLICK_LOOKBACK), at),
            Some(true),
            "30 days before, to the second"
        );
        assert_eq!(
            clicked_from_latest(Some(at - CLICK_LOOKBACK - TimeDelta::seconds(1)), at),
            Some(false),
            "longer ago"
        );
        assert_eq!(
            clicked_from_latest(Some(at + TimeDelta::seconds(1)), at),
            None,
            "a click after the order says nothing of the clicks before it"
        );
    }

    #[test]
    fn orders_without_clicks_need_volume_and_a_clear_majority() {
        assert!(orders_without_clicks(9, 9).is_none());
        assert!(orders_without_clicks(10, 7).is_none());
        assert_eq!(
            orders_without_clicks(10, 8).as_deref(),
            Some("8 of 10 orders had no click on the creator's links before them")
        );
    }

    #[test]
    fn a_codes_history_counts_orders_one_after_the_other() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap_or_default();
        let mut code = CodeHistory::default();
        code.set_totals(40, 5);
        code.set_day(baseline_start(day), 3);
        code.set_day(day - Days::new(1), 4);
        code.set_day(day - Days::new(BASELINE_DAYS as u64 + 1), 100);
        let first = code.count(day, true);
        assert_eq!(
            first,
            CodeCounts {
                orders: 41,
                without_click: 6,
                day_orders: 1,
                baseline_orders: 7,
            },
            "the day before the baseline does not count"
        );
        let second = code.count(day, false);
        assert_eq!((second.orders, second.without_click), (42, 6));
        assert_eq!((second.day_orders, second.baseline_orders), (2, 7));
        let next_day = code.count(day + Days::new(1), true);
        assert_eq!((next_day.day_orders, next_day.baseline_orders), (1, 6));
    }

    #[test]
    fn spikes_are_measured_against_the_codes_own_history() {
        assert!(
            spike("2026-11-25", 12, baseline_milli(28 * 3)).is_none(),
            "3 a day: 12 is not 5x"
        );
        assert!(spike("2026-11-25", 16, baseline_milli(28 * 3)).is_some());
        assert!(spike("2026-11-25", 9, 0).is_none(), "too few to tell");
        assert!(
            spike("2026-11-25", 50, 0).is_none(),
            "no history to jump from"
        );
        assert!(
            spike("2026-11-25", 10, baseline_milli(1)).is_some(),
            "1 in 28 days, then 10"
        );
    }
}
