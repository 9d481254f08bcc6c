//! The code of each check kind, one module per resource: `user` (the operation itself
//! and resource bodies), `patch` (the PatchOp envelope and PatchUser), `list` (ListUsers
//! and ListGroups queries). Group checks live in `rules/group.rs`, beside the member
//! batches they share code with.

pub(crate) mod list;
pub(crate) mod patch;
pub(crate) mod user;
