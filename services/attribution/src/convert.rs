//! Stored rows ↔ protobuf messages.

use chrono::{DateTime, Utc};
use tracking_api::attribution::v1 as pb;

use crate::domain::amazon_reports::payable_at;
use crate::store::amazon_reports::ReportSale;
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
        kind: pb::ConversionKind::Order as i32,
        amazon_report_day: None,
    }
}

/// What an Amazon report day's entry shows as its commission (the approved amount once
/// approved, else the current one) and as its adjustment (what revisions after approval
/// changed).
pub fn report_commission(sale: &ReportSale) -> (i64, i64) {
    if sale.status == "approved" {
        (
            sale.approved_commission_minor,
            sale.commission_minor - sale.approved_commission_minor,
        )
    } else {
        (sale.commission_minor, 0)
    }
}

/// An Amazon report day credited to a campaign, as a conversion entry: the day's sales are its
/// revenue; the order fields stay empty.
pub fn report_sale_to_proto(sale: &ReportSale) -> pb::Conversion {
    let (commission_minor, adjusted_minor) = report_commission(sale);
    let updated_at = timestamp(sale.updated_at);
    pb::Conversion {
        id: sale.id,
        campaign_id: sale.campaign_id,
        creator_id: sale.creator_id,
        integration_id: sale.integration_id,
        share_bps: 10_000,
        shared: sale.shared,
        status: status_to_proto(&sale.status) as i32,
        currency: sale.currency.clone(),
        revenue_minor: sale.sales_minor,
        commission_minor,
        commission_currency: sale.commission_currency.clone(),
        adjustments: if adjusted_minor == 0 {
            Vec::new()
        } else {
            vec![pb::Adjustment {
                commission_minor: adjusted_minor,
                revenue_minor: 0,
                reason: "amazon revised the day after approval".to_owned(),
                at: Some(updated_at),
            }]
        },
        approve_at: sale.priced.then(|| timestamp(payable_at(sale.approve_on))),
        updated_at: Some(updated_at),
        kind: pb::ConversionKind::AmazonReportDay as i32,
        amazon_report_day: Some(pb::AmazonReportDay {
            day: sale.day.to_string(),
            purchases: sale.purchases,
            revision: sale.revision,
            tag_campaign_id: sale.tag_campaign_id,
            priced: sale.priced,
        }),
        ..pb::Conversion::default()
    }
}
