//! AttributionService's own events: every new or changed conversion, in the same transaction as
//! the change, for `StreamConversions`.

use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::attribution::v1 as pb;
use tracking_db::DbError;
use tracking_events::{NewEvent, StoredEvent};

use crate::convert::conversion_to_proto;
use crate::store::conversions::ConversionRow;

pub async fn conversion_changed(
    conn: &mut AsyncPgConnection,
    rows: &[&ConversionRow],
) -> Result<(), DbError> {
    let events: Vec<NewEvent> = rows
        .iter()
        .map(|row| NewEvent {
            brand_id: row.brand_id,
            kind: "conversion",
            payload: pb::ConversionEvent {
                seq: 0,
                conversion: Some(conversion_to_proto(row, &[])),
            }
            .encode_to_vec(),
        })
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(())
}

/// A stored event, as `StreamConversions` sends it.
pub fn decode(stored: &StoredEvent) -> Result<pb::ConversionEvent, prost::DecodeError> {
    let mut event = pb::ConversionEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
