//! CodeMintService's errors and their one mapping to gRPC statuses.

use tonic::Status;
use tracking_db::DbError;

use crate::domain::Failure;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Minting failed for a reason recorded for the brand.
    #[error("{}", .0.message())]
    MintFailed(Failure),
    #[error("{0}")]
    Unavailable(String),
    /// Refused to keep the service responsive under overload (load shedding).
    #[error("{0}")]
    Overloaded(String),
    /// Another service refused the request as given.
    #[error("{}", .0.message())]
    Upstream(Status),
    #[error("{0}")]
    Db(String),
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

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Db(_))
    }

    /// Whether PostgreSQL aborted the transaction to settle a conflict with another one (a
    /// deadlock or a serialization failure), so that running it again as it was is the remedy.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Unavailable(why) | Error::Db(why) => {
                why.contains("deadlock detected") || why.contains("could not serialize")
            }
            _ => false,
        }
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(why) => Error::Unavailable(format!("database unavailable: {why}")),
            DbError::NotFound => Error::NotFound("not found".to_owned()),
            DbError::UniqueViolation { constraint } => {
                Error::AlreadyExists(format!("unique violation on {constraint}"))
            }
            reused @ DbError::RequestIdReused { .. } => Error::Db(reused.to_string()),
            DbError::Other(why) => Error::Db(why),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        Error::from(tracking_db::classify(err))
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

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        match err {
            Error::InvalidArgument { field, message } => {
                tracking_server::status::invalid(&field, message)
            }
            Error::NotFound(what) => Status::not_found(what),
            Error::AlreadyExists(what) => Status::already_exists(what),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::MintFailed(failure) => Status::failed_precondition(failure.message()),
            Error::Unavailable(why) => {
                tracing::warn!(reason = %why, "unavailable");
                Status::unavailable("a dependency is unavailable, retry later")
            }
            Error::Overloaded(why) => {
                Status::resource_exhausted(format!("{why}; retry with backoff"))
            }
            Error::Upstream(status) => status,
            Error::Db(why) | Error::Internal(why) => tracking_server::status::internal(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadlock_from_the_database_is_a_conflict() {
        let deadlock = Error::from(DbError::Unavailable("deadlock detected".to_owned()));
        assert!(deadlock.is_conflict());
        let serialization = Error::from(DbError::Unavailable(
            "could not serialize access due to concurrent update".to_owned(),
        ));
        assert!(serialization.is_conflict());
        let gone = Error::from(DbError::Unavailable("connection closed".to_owned()));
        assert!(!gone.is_conflict());
        assert!(!Error::Internal("deadlock detected".to_owned()).is_conflict());
    }
}
