//! SCIM 2.0's vocabulary (RFC 7643 / RFC 7644). Pure code with no I/O that knows nothing
//! of AWS: the rules engine and the emulator build on it.

pub mod error;
