//! The one mapping of database failures to gRPC statuses, and helpers for the messages clients
//! see. Internal causes are logged (with the request's span, which carries its request id), never
//! sent.

use tonic::Status;
use tracking_db::DbError;

/// INVALID_ARGUMENT naming the field: `"<field>: <problem>"`.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {problem}"))
}

/// Maps a database error that the service did not handle itself.
pub fn from_db(err: DbError) -> Status {
    match err {
        DbError::Unavailable(reason) => {
            tracing::warn!(%reason, "database unavailable");
            Status::unavailable("database unavailable, retry later")
        }
        DbError::NotFound => Status::not_found("not found"),
        DbError::UniqueViolation { constraint } => {
            tracing::info!(%constraint, "unique violation");
            Status::already_exists("already exists")
        }
        DbError::RequestIdReused { rpc } => invalid(
            "request_id",
            format!(
                "was already used for a different {rpc} request (a retry must repeat the request \
                 as sent; a new request takes a new request_id)"
            ),
        ),
        DbError::Other(reason) => internal(reason),
    }
}

/// INTERNAL with the cause logged, not sent.
pub fn internal(reason: impl std::fmt::Display) -> Status {
    tracing::error!(%reason, "internal error");
    Status::internal("internal error")
}

/// What a caller is told about a request message that does not parse as its type.
pub const UNPARSEABLE: &str =
    "request: not a valid message of this call (bad encoding or invalid UTF-8)";

/// tonic's decoder reports a message that does not parse (invalid UTF-8 in a string, wrong wire
/// types) as INTERNAL, as the gRPC status-code guide has it; that would send operators after a
/// server fault. It is the caller's input: INVALID_ARGUMENT naming the request.
pub fn is_unparseable(code: tonic::Code, message: &str) -> bool {
    code == tonic::Code::Internal && message.starts_with("failed to decode Protobuf message")
}

/// An error read from a client's request stream, as the caller should see it: an unparseable
/// message is [`UNPARSEABLE`], anything else (the client went away, a message too large) as is.
pub fn inbound(status: Status) -> Status {
    if is_unparseable(status.code(), status.message()) {
        Status::invalid_argument(UNPARSEABLE)
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparseable_messages_are_the_callers_input() {
        let decode = Status::internal("failed to decode Protobuf message: invalid string value");
        let mapped = inbound(decode);
        assert_eq!(mapped.code(), tonic::Code::InvalidArgument);
        assert_eq!(mapped.message(), UNPARSEABLE);
        let other = inbound(Status::internal("h2 protocol error"));
        assert_eq!(other.code(), tonic::Code::Internal);
        let cancelled = inbound(Status::cancelled("client went away"));
        assert_eq!(cancelled.code(), tonic::Code::Cancelled);
    }
}
