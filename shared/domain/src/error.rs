//! How an outcome is classified, so that every edge (HTTP, SQS) maps it the same way.

/// What kind of failure a domain error is. The HTTP edge maps each to a status code and
/// the event edge to retryable or not; the domain never mentions either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is malformed or fails validation: fix it before retrying.
    BadInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    /// The request conflicts with the current state (already claimed, already registered).
    Conflict,
    /// Well-formed, but the business rules refuse it (expired, wrong state).
    Unprocessable,
    /// Locked out for a while.
    TooManyAttempts {
        retry_after_secs: u64,
    },
    /// Our side failed; the caller did nothing wrong.
    Infrastructure {
        retryable: bool,
    },
}

/// Implemented by every domain error enum: a stable machine-readable code and a kind.
pub trait Classified: std::fmt::Display {
    fn kind(&self) -> Kind;
    /// Stable, snake_case, documented in docs/errors.md. Clients switch on it.
    fn code(&self) -> &'static str;
}

/// A failure of the infrastructure behind a port (network, throttling, a bug in an adapter).
/// Kept apart from business outcomes so that no business rule ever matches on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct InfraError {
    pub operation: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl InfraError {
    pub fn retryable(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            message: message.into(),
            retryable: false,
        }
    }
}

impl Classified for InfraError {
    fn kind(&self) -> Kind {
        Kind::Infrastructure {
            retryable: self.retryable,
        }
    }
    fn code(&self) -> &'static str {
        "internal_error"
    }
}
