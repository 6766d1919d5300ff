//! PlanService's errors and their one mapping to gRPC statuses.

use tonic::Status;
use tracking_db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency (ProviderGateway) is down or refused us.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency answered with a status we pass on as is.
    #[error("{0}")]
    Upstream(Status),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
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
            Error::AlreadyExists(what) => Status::already_exists(what),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::Unavailable(why) => {
                tracing::warn!(reason = %why, "dependency unavailable");
                Status::unavailable(why)
            }
            Error::Upstream(status) => status,
            Error::Db(db) => tracking_server::status::from_db(db),
            Error::Internal(reason) => tracking_server::status::internal(reason),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        Error::Db(tracking_db::classify(err))
    }
}

impl From<tracking_clients::ClientError> for Error {
    fn from(err: tracking_clients::ClientError) -> Self {
        use tracking_clients::ClientError;
        match err {
            ClientError::NotFound(what) => Error::NotFound(what),
            ClientError::Unavailable(why) => Error::Unavailable(why),
            ClientError::Refused(status) => Error::Upstream(status),
            ClientError::Internal(why) => Error::Internal(why),
        }
    }
}
