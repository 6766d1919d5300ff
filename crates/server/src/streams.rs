//! The `Watch*` RPCs of every service: the caller's scope from its token, `after_seq` checked,
//! then the service's outbox replayed and followed, each stored event turned into the
//! service's response message.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::Status;
use tracking_events::{EventLog, StoredEvent};

use crate::auth::Claims;
use crate::status;

/// A server stream as tonic handlers return it.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The stream a `Watch*` handler returns: every event after `after_seq` that the caller may see
/// (every brand's for service and ops tokens, the token's brand's otherwise), as `respond` turns
/// it into the RPC's response (`None` skips an event the call did not ask for). It never ends
/// OK: when the server shuts down it ends UNAVAILABLE, so that a client resumes from the last
/// seq it received elsewhere rather than take the end of an endless stream for a clean one. A
/// brand may keep [`tracking_events::MAX_BRAND_WATCHERS`] streams of one log open at once; more
/// are RESOURCE_EXHAUSTED.
pub fn watch<T, F>(
    log: &EventLog,
    claims: &Claims,
    after_seq: i64,
    respond: F,
) -> Result<ResponseStream<T>, Status>
where
    T: Send + 'static,
    F: Fn(&StoredEvent) -> Result<Option<T>, prost::DecodeError> + Send + 'static,
{
    let scope = claims.stream_scope()?;
    if after_seq < 0 {
        return Err(status::invalid("after_seq", "must be 0 or more"));
    }
    let events = log
        .watch(after_seq, scope)
        .map_err(|too_many| Status::resource_exhausted(format!("{too_many}; close one")))?;
    tracing::info!(after_seq, brand = ?scope, "event watcher connected");
    // The log's stream ends only at shutdown (or after an error, which ends the call first).
    let stopping = futures::stream::once(std::future::ready(Err(Status::unavailable(
        "the server is shutting down; resume from the last seq received",
    ))));
    Ok(Box::pin(
        events
            .filter_map(move |item| {
                let response = item
                    .map_err(status::from_db)
                    .and_then(|stored| respond(&stored).map_err(status::internal))
                    .transpose();
                std::future::ready(response)
            })
            .chain(stopping),
    ))
}
