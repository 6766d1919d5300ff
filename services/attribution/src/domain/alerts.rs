//! Leaked-code detection: a code whose orders mostly arrive with no click on the creator's
//! links (shoppers found it elsewhere, e.g. on a coupon site), or whose orders on one day jump
//! far above its own history.

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
    fn orders_without_clicks_need_volume_and_a_clear_majority() {
        assert!(orders_without_clicks(9, 9).is_none());
        assert!(orders_without_clicks(10, 7).is_none());
        assert_eq!(
            orders_without_clicks(10, 8).as_deref(),
            Some("8 of 10 orders had no click on the creator's links before them")
        );
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
