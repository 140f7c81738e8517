//! Filesystem blob store (being written).
pub struct FsBlobStore;
