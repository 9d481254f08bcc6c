//! Errors that end a request early. Each records whose fault it is, so the answer and
//! the log can tell the admin where to look: their IdP (client), the upstream, or us.

use crate::upstream::UpstreamError;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request itself: fix it in the IdP.
    Client,
    /// The upstream SCIM service or the way to it.
    Upstream,
    /// scimguard itself: a bug to report.
    Proxy,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Upstream => "upstream",
            Blame::Proxy => "proxy",
        }
    }
}

/// What went wrong, with the numbers the detail quotes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("the request body is larger than the {limit} bytes allowed (AWS accepts at most 1,048,576 bytes, its maxPayloadSize)")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?} (--body-timeout)")]
    BodyTimeout(std::time::Duration),
    #[error(
        "the request target `{0}` has no path; send an origin-form target such as /scim/v2/Users"
    )]
    NoPath(String),
    #[error("the request target is {length} bytes long, over scimguard's limit of {limit} bytes")]
    TargetTooLong { length: usize, limit: usize },
    #[error("the request path `{path}` has a `{segment}` segment (dot-segments such as /../, /./ and %2e%2e could climb out of the upstream URL's path into another tenant's), so it was not forwarded")]
    DotSegment { path: String, segment: String },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("scimguard's local throttle refused the request ({}); retry after {retry_after:?}", reason.describe())]
    Throttled {
        retry_after: std::time::Duration,
        reason: crate::throttle::Refusal,
    },
    #[error("internal error in scimguard: {0}")]
    Internal(String),
}

/// An error that becomes the response: its status and AWS-shaped SCIM error body.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct Error {
    pub kind: ErrorKind,
}

impl Error {
    pub fn status(&self) -> u16 {
        match &self.kind {
            ErrorKind::BodyTooLarge { .. } => 413,
            ErrorKind::BodyRead(_) | ErrorKind::NoPath(_) | ErrorKind::DotSegment { .. } => 400,
            ErrorKind::BodyTimeout(_) => 408,
            ErrorKind::TargetTooLong { .. } => 414,
            ErrorKind::Upstream(e) => e.status(),
            ErrorKind::Throttled { .. } => 429,
            ErrorKind::Internal(_) => 500,
        }
    }

    pub fn blame(&self) -> Blame {
        match &self.kind {
            ErrorKind::BodyTooLarge { .. }
            | ErrorKind::BodyRead(_)
            | ErrorKind::BodyTimeout(_)
            | ErrorKind::NoPath(_)
            | ErrorKind::TargetTooLong { .. }
            | ErrorKind::DotSegment { .. } => Blame::Client,
            ErrorKind::Upstream(_) => Blame::Upstream,
            ErrorKind::Throttled { .. } => Blame::Client,
            ErrorKind::Internal(_) => Blame::Proxy,
        }
    }

    /// The SCIM `detail`: what happened, then what to check.
    pub fn detail(&self) -> String {
        let advice = match &self.kind {
            ErrorKind::BodyTooLarge { .. } => {
                "Split the change into smaller requests (at most 100 group members per PATCH)."
            }
            ErrorKind::BodyRead(_) | ErrorKind::NoPath(_) => "Check the IdP's SCIM endpoint URL.",
            ErrorKind::BodyTimeout(_) => {
                "Send the whole body at once; check the network between the IdP and scimguard."
            }
            ErrorKind::TargetTooLong { .. } => {
                "AWS's own targets are short; shorten the query (e.g. a filter with fewer terms) or check the IdP's SCIM endpoint URL."
            }
            ErrorKind::DotSegment { .. } => {
                "Send the resource's own path, such as /{tenant}/scim/v2/Users/{id}, with no . or .. segments."
            }
            ErrorKind::Upstream(UpstreamError::Timeout { .. }) => {
                "The request may or may not have been applied; check the resource before retrying."
            }
            ErrorKind::Upstream(_) => {
                "Check the --upstream URL, DNS and network access from scimguard to the upstream."
            }
            ErrorKind::Internal(_) => {
                "This is a scimguard bug; please report it with the request id."
            }
            ErrorKind::Throttled { .. } => "Retry after the time in Retry-After.",
        };
        format!("scimguard: {self}. {advice}")
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error { kind }
    }
}

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Self {
        Error { kind: e.into() }
    }
}
