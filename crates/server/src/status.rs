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
        DbError::Other(reason) => internal(reason),
    }
}

/// INTERNAL with the cause logged, not sent.
pub fn internal(reason: impl std::fmt::Display) -> Status {
    tracing::error!(%reason, "internal error");
    Status::internal("internal error")
}
