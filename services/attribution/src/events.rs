//! AttributionService's own events: every new or changed conversion (an order's, or an Amazon
//! report day's), in the same transaction as the change, for `StreamConversions`.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::attribution::v1 as pb;
use tracking_db::DbError;
use tracking_events::{NewEvent, StoredEvent};

use crate::convert::{conversion_to_proto, report_sale_to_proto};
use crate::store::amazon_reports::ReportSale;
use crate::store::conversions::{self, AdjustmentRow, ConversionRow};

/// Each row as changed, with the adjustments (refunds after approval) it had then: a row's
/// stored adjustments, up to those its adjusted amounts add up to (a row changed twice in one
/// batch has an event for each change). Read only for rows that have adjustments.
pub async fn conversion_changed(
    conn: &mut AsyncPgConnection,
    rows: &[&ConversionRow],
) -> Result<(), DbError> {
    let mut adjusted: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in rows.iter().filter(|row| has_adjustments(row)) {
        adjusted.entry(row.brand_id).or_default().push(row.id);
    }
    let mut stored: HashMap<(i64, i64), Vec<AdjustmentRow>> = HashMap::new();
    for (brand_id, mut ids) in adjusted {
        ids.sort_unstable();
        ids.dedup();
        for adjustment in conversions::adjustments(conn, brand_id, &ids).await? {
            stored
                .entry((brand_id, adjustment.conversion_id))
                .or_default()
                .push(adjustment);
        }
    }
    let events: Vec<NewEvent> = rows
        .iter()
        .map(|row| {
            let all = stored
                .get(&(row.brand_id, row.id))
                .map_or(&[][..], Vec::as_slice);
            event(row.brand_id, conversion_to_proto(row, as_of(all, row)))
        })
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(())
}

fn has_adjustments(row: &ConversionRow) -> bool {
    row.adjusted_revenue_minor != 0 || row.adjusted_commission_minor != 0
}

/// The first of `all` (a conversion's adjustments, oldest first) that add up to `row`'s
/// adjusted amounts.
fn as_of<'a>(all: &'a [AdjustmentRow], row: &ConversionRow) -> &'a [AdjustmentRow] {
    if !has_adjustments(row) {
        return &[];
    }
    let (mut revenue, mut commission) = (0, 0);
    for (n, adjustment) in all.iter().enumerate() {
        revenue += adjustment.revenue_minor;
        commission += adjustment.commission_minor;
        if revenue == row.adjusted_revenue_minor && commission == row.adjusted_commission_minor {
            return &all[..=n];
        }
    }
    all
}

/// Amazon report days applied, priced again or approved.
pub async fn report_sales_changed(
    conn: &mut AsyncPgConnection,
    sales: &[ReportSale],
) -> Result<(), DbError> {
    let events: Vec<NewEvent> = sales
        .iter()
        .map(|sale| event(sale.brand_id, report_sale_to_proto(sale)))
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(())
}

fn event(brand_id: i64, conversion: pb::Conversion) -> NewEvent {
    NewEvent {
        brand_id,
        kind: "conversion",
        payload: pb::ConversionEvent {
            seq: 0,
            conversion: Some(conversion),
        }
        .encode_to_vec(),
    }
}

/// A stored event, as `StreamConversions` sends it.
pub fn decode(stored: &StoredEvent) -> Result<pb::ConversionEvent, prost::DecodeError> {
    let mut event = pb::ConversionEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
