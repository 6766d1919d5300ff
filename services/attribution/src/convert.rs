//! Stored rows ↔ protobuf messages.

use chrono::{DateTime, Utc};
use tracking_api::attribution::v1 as pb;

use crate::store::conversions::{AdjustmentRow, ConversionRow};

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

pub fn status_to_proto(status: &str) -> pb::ConversionStatus {
    match status {
        "pending" => pb::ConversionStatus::Pending,
        "approved" => pb::ConversionStatus::Approved,
        "reversed" => pb::ConversionStatus::Reversed,
        _ => pb::ConversionStatus::Unspecified,
    }
}

pub fn method_to_proto(method: &str) -> pb::AttributionMethod {
    match method {
        "code" => pb::AttributionMethod::Code,
        "click" => pb::AttributionMethod::Click,
        _ => pb::AttributionMethod::Unspecified,
    }
}

fn split_to_proto(rule: &str) -> pb::SplitRule {
    match rule {
        "none" => pb::SplitRule::None,
        "lines" => pb::SplitRule::Lines,
        "equal" => pb::SplitRule::Equal,
        _ => pb::SplitRule::Unspecified,
    }
}

pub fn conversion_to_proto(row: &ConversionRow, adjustments: &[AdjustmentRow]) -> pb::Conversion {
    pb::Conversion {
        id: row.id,
        campaign_id: row.campaign_id,
        creator_id: row.creator_id,
        integration_id: row.integration_id,
        store_order_id: row.store_order_id.clone(),
        method: method_to_proto(&row.method) as i32,
        matched: row.matched.clone(),
        split_rule: split_to_proto(&row.split_rule) as i32,
        share_bps: row.share_bps,
        shared: row.shared,
        status: status_to_proto(&row.status) as i32,
        order_status: row.order_status.clone(),
        currency: row.currency.clone(),
        revenue_minor: row.revenue_minor,
        discount_minor: row.discount_minor,
        commission_minor: row.commission_minor,
        commission_currency: row.commission_currency.clone(),
        adjustments: adjustments
            .iter()
            .filter(|a| a.conversion_id == row.id)
            .map(|a| pb::Adjustment {
                commission_minor: a.commission_minor,
                revenue_minor: a.revenue_minor,
                reason: a.reason.clone(),
                at: Some(timestamp(a.at)),
            })
            .collect(),
        ordered_at: Some(timestamp(row.ordered_at)),
        approve_at: row.approve_at.map(timestamp),
        updated_at: Some(timestamp(row.updated_at)),
    }
}
