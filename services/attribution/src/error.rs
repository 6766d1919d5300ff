//! AttributionService's errors and their one mapping to gRPC statuses.

use tonic::Status;
use tracking_db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// More work than the service takes now: the caller retries with backoff.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Not done now (the database slow or down, the server stopping): the caller retries.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the service's own, logged, not described to the caller.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        match err {
            Error::InvalidArgument { field, message } => {
                tracking_server::status::invalid(&field, message)
            }
            Error::NotFound(what) => Status::not_found(what),
            Error::PermissionDenied(why) => Status::permission_denied(why),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::AlreadyExists(what) => Status::already_exists(what),
            Error::ResourceExhausted(why) => Status::resource_exhausted(why),
            Error::Unavailable(why) => Status::unavailable(why),
            Error::Internal(why) => tracking_server::status::internal(why),
            Error::Db(db) => tracking_server::status::from_db(db),
        }
    }
}
