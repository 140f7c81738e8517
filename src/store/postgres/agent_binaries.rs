//! The depot agent's executable per platform (CONTRACT 7a), in PostgreSQL.

use super::pool::Queries;
use super::rows::{self, to_i64, Cells};
use super::Result;
use crate::domain::Platform;
use crate::store::AgentBinary;
use postgres::Row;

fn agent_binary(row: &Row) -> Result<AgentBinary> {
    let c = Cells::new(row, "agent_binaries", &["platform"]);
    Ok(AgentBinary {
        platform: c.parse("platform", Platform::parse)?,
        sha256: c.sha256("sha256")?,
        size: c.u64("size")?,
        added_at: c.get("added_at")?,
    })
}

pub(super) fn put_agent_binaries(tx: &mut dyn Queries, binaries: &[AgentBinary]) -> Result<()> {
    for b in binaries {
        tx.execute(
            "INSERT INTO agent_binaries (platform, sha256, size, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (platform) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, \
             added_at = excluded.added_at",
            &[
                &b.platform.as_str(),
                &b.sha256.as_bytes().as_slice(),
                &to_i64("agent binary size", b.size)?,
                &b.added_at,
            ],
        )?;
    }
    Ok(())
}

pub(super) fn list_agent_binaries(db: &mut dyn Queries) -> Result<Vec<AgentBinary>> {
    let found = db.query(
        "SELECT platform, sha256, size, added_at FROM agent_binaries ORDER BY platform",
        &[],
    )?;
    let mut out = rows::all(found, agent_binary)?;
    out.sort_by_key(|b| b.platform);
    Ok(out)
}
