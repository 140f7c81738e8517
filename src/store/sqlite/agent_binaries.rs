//! The depot agent's executable per platform (CONTRACT 7a), in SQLite.

use super::collect;
use super::rows::{to_i64, Cells};
use crate::domain::{Platform, Sha256};
use crate::store::{AgentBinary, Result};
use rusqlite::{params, Row, Transaction};

fn agent_binary(row: &Row) -> Result<AgentBinary> {
    let c = Cells::new(row, "agent_binaries", &["platform"]);
    Ok(AgentBinary {
        platform: c.parse("platform", Platform::parse)?,
        sha256: c.parse("sha256", Sha256::parse)?,
        size: c.u64("size")?,
        added_at: c.get("added_at")?,
    })
}

pub(super) fn put_agent_binaries(tx: &Transaction, binaries: &[AgentBinary]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO agent_binaries (platform, sha256, size, added_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (platform) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, \
         added_at = excluded.added_at",
    )?;
    for b in binaries {
        stmt.execute(params![
            b.platform.as_str(),
            b.sha256.to_hex(),
            to_i64("agent binary size", b.size)?,
            b.added_at
        ])?;
    }
    Ok(())
}

pub(super) fn list_agent_binaries(tx: &Transaction) -> Result<Vec<AgentBinary>> {
    let mut stmt = tx.prepare_cached(
        "SELECT platform, sha256, size, added_at FROM agent_binaries ORDER BY platform",
    )?;
    let mut out = collect(&mut stmt, [], agent_binary)?;
    out.sort_by_key(|b| b.platform);
    Ok(out)
}
