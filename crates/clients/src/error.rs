//! How a call to another service failed, sorted by what the caller should do.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The thing asked for does not exist (for the caller's brand).
    #[error("{0}")]
    NotFound(String),
    /// The other service (or what it depends on) is down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The other service refused the request as given (bad input, auth, a rule): pass it on.
    #[error("{}", .0.message())]
    Refused(Status),
    /// A bug or an answer that makes no sense.
    #[error("{0}")]
    Internal(String),
}

impl ClientError {
    /// Sorts a status from `service`.
    pub fn from_status(service: &str, status: Status) -> ClientError {
        match status.code() {
            Code::NotFound => ClientError::NotFound(status.message().to_owned()),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted => {
                ClientError::Unavailable(format!("{service} unavailable: {}", status.message()))
            }
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists => ClientError::Refused(status),
            _ => ClientError::Internal(format!("{service}: {status}")),
        }
    }
}
