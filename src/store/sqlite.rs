//! SQLite metadata store (being written).
pub struct SqliteStore;
