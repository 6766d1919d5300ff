//! AttributionService's own events: every new or changed conversion (an order's, or an Amazon
//! report day's), in the same transaction as the change, for `StreamConversions`.

use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::attribution::v1 as pb;
use tracking_db::DbError;
use tracking_events::{NewEvent, StoredEvent};

use crate::convert::{conversion_to_proto, report_sale_to_proto};
use crate::store::amazon_reports::ReportSale;
use crate::store::conversions::ConversionRow;

pub async fn conversion_changed(
    conn: &mut AsyncPgConnection,
    rows: &[&ConversionRow],
) -> Result<(), DbError> {
    let events: Vec<NewEvent> = rows
        .iter()
        .map(|row| event(row.brand_id, conversion_to_proto(row, &[])))
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(())
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
