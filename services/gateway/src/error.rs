//! The gateway's errors and their one mapping to gRPC statuses.

use tonic::Status;
use tracking_db::DbError;

use crate::adapters::AdapterError;

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
    #[error(transparent)]
    Store(#[from] AdapterError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("credentials: {0}")]
    Crypto(#[from] crate::crypto::SealError),
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
            // The adapter logged it with the integration; the reason is the store's, safe to send.
            Error::Store(AdapterError::Unavailable(why)) => Status::unavailable(why),
            Error::Store(AdapterError::Misconfigured(why)) => Status::failed_precondition(why),
            Error::Store(AdapterError::Db(db)) | Error::Db(db) => {
                tracking_server::status::from_db(db)
            }
            Error::Crypto(err) => tracking_server::status::internal(err),
        }
    }
}
