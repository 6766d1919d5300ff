//! CodeMintService's events: every code change with the full state of the code, encoded as a
//! `CodeEvent` into the outbox in the same transaction as the change.

use prost::Message;
use tracking_api::mint::v1::{CodeEvent, CodeEventKind};
use tracking_events::{NewEvent, StoredEvent};

use crate::convert::{code_to_proto, timestamp};
use crate::domain::Code;

pub fn code(kind: CodeEventKind, code: &Code, public_base_url: &str) -> NewEvent {
    let event = CodeEvent {
        seq: 0,
        brand_id: code.brand_id,
        kind: kind as i32,
        occurred_at: Some(timestamp(chrono::Utc::now())),
        code: Some(code_to_proto(code, public_base_url)),
    };
    NewEvent {
        brand_id: code.brand_id,
        kind: kind.as_str_name(),
        payload: event.encode_to_vec(),
    }
}

/// A stored event as sent on `WatchCodes`.
pub fn decode(stored: &StoredEvent) -> Result<CodeEvent, prost::DecodeError> {
    let mut event = CodeEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
