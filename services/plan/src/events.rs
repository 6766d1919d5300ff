//! PlanService's events: every change carries the full new state of what changed, encoded as a
//! `PlanEvent` into the outbox in the same transaction as the change.

use prost::Message;
use tracking_api::plan::v1::{EventKind, PlanEvent, plan_event::Subject};
use tracking_events::NewEvent;

use crate::convert::{campaign_to_proto, plan_to_proto, roster_entry_to_proto, timestamp};
use crate::domain::campaign::Campaign;
use crate::domain::plan::Plan;
use crate::domain::roster::RosterEntry;

fn event(brand_id: i64, kind: EventKind, subject: Subject) -> NewEvent {
    let event = PlanEvent {
        seq: 0,
        brand_id,
        kind: kind as i32,
        occurred_at: Some(timestamp(chrono::Utc::now())),
        subject: Some(subject),
    };
    NewEvent {
        brand_id,
        kind: kind.as_str_name(),
        payload: event.encode_to_vec(),
    }
}

pub fn plan(kind: EventKind, plan: &Plan) -> NewEvent {
    event(plan.brand_id, kind, Subject::Plan(plan_to_proto(plan)))
}

pub fn campaign(kind: EventKind, campaign: &Campaign) -> NewEvent {
    event(
        campaign.brand_id,
        kind,
        Subject::Campaign(campaign_to_proto(campaign)),
    )
}

pub fn roster(kind: EventKind, entry: &RosterEntry) -> NewEvent {
    event(
        entry.brand_id,
        kind,
        Subject::RosterEntry(roster_entry_to_proto(entry)),
    )
}

/// A stored event as sent on `WatchEvents`: the payload with its sequence number filled in.
pub fn decode(stored: &tracking_events::StoredEvent) -> Result<PlanEvent, prost::DecodeError> {
    let mut event = PlanEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
