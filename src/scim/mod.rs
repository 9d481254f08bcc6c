//! SCIM 2.0's vocabulary (RFC 7643 / RFC 7644). Pure code with no I/O that knows nothing
//! of AWS: the rules engine and the emulator build on it.
//!
//! - [`operation`]: `(method, path)` → [`Operation`].
//! - [`query`]: query strings, percent-decoded ([`Query`]).
//! - [`filter`]: RFC 7644 §3.4.2.2 filters ([`parse_filter`], [`Filter`]).
//! - [`path`]: RFC 7644 §3.5.2 PATCH paths ([`parse_path`], [`PatchPath`]).
//! - [`patch`]: the PatchOp message ([`PatchRequest`]).
//! - [`report`]: the text `scimguard parse filter|path` prints.

pub mod error;
pub mod filter;
pub mod operation;
pub mod patch;
pub mod path;
pub mod percent;
pub mod query;
pub mod report;

pub use filter::{parse_filter, AttrPath, CompValue, CompareOp, Filter, ParseError};
pub use operation::{classify, Classified, Operation};
pub use patch::{PatchOpKind, PatchOperation, PatchRequest};
pub use path::{parse_path, PatchPath};
pub use query::{Query, QueryError};
pub use report::{explain_filter, explain_path};
