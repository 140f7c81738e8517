//! The depot agent's executables (CONTRACT 7a): stored per platform as blobs, listed, and handed
//! to the build, which puts the platform's executable into every package as `depot`
//! (`depot.exe` on Windows).

use super::{io_err, now, Actor, BuildReport, BuildScope, Depot, NoProgress, Result, ServiceError};
use crate::domain::{EntryName, Os, Platform};
use crate::package::PackageEntry;
use crate::store::AgentBinary;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// The largest agent executable accepted. Every package carries it in its tail, built in
/// memory, so it must stay far below the payloads' sizes; a release build of depot is a few
/// tens of MB, a debug build about 150.
pub const MAX_AGENT_BINARY_BYTES: u64 = 512 << 20;

/// An agent executable to store: `depot agent-binary add PLATFORM=PATH`.
#[derive(Debug, Clone)]
pub struct AgentBinarySource {
    pub platform: Platform,
    pub path: PathBuf,
}

/// The name the agent has in a package of `platform`.
pub fn agent_entry_name(platform: Platform) -> &'static str {
    match platform.os() {
        Os::Windows => "depot.exe",
        Os::Macos | Os::Linux => "depot",
    }
}

/// Whether `head` starts like an executable of `os`: ELF on Linux, Mach-O (thin or universal)
/// on macOS, PE (`MZ`) on Windows. A file for the wrong OS would install and never run.
fn looks_executable_for(os: Os, head: &[u8]) -> bool {
    match os {
        Os::Linux => head.starts_with(b"\x7fELF"),
        Os::Windows => head.starts_with(b"MZ"),
        Os::Macos => [
            [0xcf, 0xfa, 0xed, 0xfe],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xca, 0xfe, 0xba, 0xbe],
        ]
        .iter()
        .any(|magic| head.starts_with(magic)),
    }
}

/// The agent entries of one build, read from the store once per platform that needs one.
#[derive(Default)]
pub(super) struct AgentEntries {
    records: BTreeMap<Platform, AgentBinary>,
    loaded: BTreeMap<Platform, Arc<PackageEntry>>,
}

impl AgentEntries {
    /// What the build key of a package of `platform` depends on: the executable's SHA-256.
    pub(super) fn key(&self, platform: Platform) -> String {
        self.records
            .get(&platform)
            .map_or_else(String::new, |b| b.sha256.to_hex())
    }

    /// The entry for packages of `platform`, when an executable was added for it.
    pub(super) fn entry(
        &mut self,
        depot: &Depot,
        platform: Platform,
    ) -> Result<Option<Arc<PackageEntry>>> {
        let Some(record) = self.records.get(&platform) else {
            return Ok(None);
        };
        if let Some(entry) = self.loaded.get(&platform) {
            return Ok(Some(Arc::clone(entry)));
        }
        let bytes = depot.blobs.read(&record.sha256)?;
        if bytes.len() as u64 != record.size {
            return Err(ServiceError::Store(crate::store::StoreError::Corrupt(
                format!(
                    "the agent executable for {platform} is {} bytes in the store, {} in its record",
                    bytes.len(),
                    record.size
                ),
            )));
        }
        let entry = Arc::new(PackageEntry {
            name: EntryName::parse(agent_entry_name(platform))?,
            bytes,
        });
        self.loaded.insert(platform, Arc::clone(&entry));
        Ok(Some(entry))
    }
}

impl Depot {
    /// Stores the agent executable of each platform given, then rebuilds every org's packages
    /// of the current releases so that they carry it.
    pub fn add_agent_binaries(
        &self,
        actor: &Actor,
        sources: &[AgentBinarySource],
    ) -> Result<(Vec<AgentBinary>, BuildReport)> {
        if sources.is_empty() {
            return Err(ServiceError::Invalid(
                "give at least one PLATFORM=PATH".into(),
            ));
        }
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].iter().any(|o| o.platform == s.platform) {
                return Err(ServiceError::Invalid(format!(
                    "two agent executables for {}",
                    s.platform
                )));
            }
        }
        let added_at = now();
        let mut records = Vec::with_capacity(sources.len());
        for source in sources {
            records.push(self.store_agent_binary(source, added_at)?);
        }
        self.meta.put_agent_binaries(&records)?;
        for r in &records {
            self.audit(
                actor,
                None,
                "agent_binary.add",
                r.platform.as_str(),
                Some(format!("sha256 {} ({} bytes)", r.sha256, r.size)),
            )?;
        }
        let report = self.build(actor, &BuildScope::default(), &NoProgress)?;
        Ok((records, report))
    }

    fn store_agent_binary(&self, source: &AgentBinarySource, added_at: i64) -> Result<AgentBinary> {
        let path = &source.path;
        let file = std::fs::File::open(path).map_err(io_err(format!(
            "cannot read agent executable {}",
            path.display()
        )))?;
        let len = file
            .metadata()
            .map_err(io_err(format!(
                "cannot read agent executable {}",
                path.display()
            )))?
            .len();
        if len > MAX_AGENT_BINARY_BYTES {
            return Err(ServiceError::Invalid(format!(
                "{} is {len} bytes; an agent executable may be at most {MAX_AGENT_BINARY_BYTES}",
                path.display()
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_AGENT_BINARY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(format!(
                "cannot read agent executable {}",
                path.display()
            )))?;
        let os = source.platform.os();
        if !looks_executable_for(os, &bytes) {
            return Err(ServiceError::Invalid(format!(
                "{} is not a {} executable (expected {}); build the agent for {}",
                path.display(),
                os.as_str(),
                match os {
                    Os::Linux => "an ELF file",
                    Os::Macos => "a Mach-O file",
                    Os::Windows => "a PE file starting with MZ",
                },
                source.platform
            )));
        }
        let mut writer = self.blobs.create()?;
        std::io::Write::write_all(&mut writer, &bytes)
            .map_err(io_err("cannot store the agent executable"))?;
        let (sha256, size) = writer.commit()?;
        Ok(AgentBinary {
            platform: source.platform,
            sha256,
            size,
            added_at,
        })
    }

    /// Every platform's agent executable.
    pub fn agent_binaries(&self) -> Result<Vec<AgentBinary>> {
        Ok(self.meta.list_agent_binaries()?)
    }

    pub(super) fn agent_entries(&self) -> Result<AgentEntries> {
        Ok(AgentEntries {
            records: self
                .meta
                .list_agent_binaries()?
                .into_iter()
                .map(|b| (b.platform, b))
                .collect(),
            loaded: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_recognised_per_os() {
        assert!(looks_executable_for(Os::Linux, b"\x7fELF\x02\x01"));
        assert!(!looks_executable_for(Os::Linux, b"MZ\x90\x00"));
        assert!(looks_executable_for(Os::Windows, b"MZ\x90\x00"));
        assert!(!looks_executable_for(Os::Windows, b"#!/bin/sh\n"));
        assert!(looks_executable_for(
            Os::Macos,
            &[0xcf, 0xfa, 0xed, 0xfe, 7]
        ));
        assert!(looks_executable_for(
            Os::Macos,
            &[0xca, 0xfe, 0xba, 0xbe, 0]
        ));
        assert!(!looks_executable_for(Os::Macos, b"\x7fELF"));
        assert!(!looks_executable_for(Os::Linux, b""));
        assert_eq!(agent_entry_name(Platform::WindowsX86_64), "depot.exe");
        assert_eq!(agent_entry_name(Platform::LinuxAarch64), "depot");
        assert_eq!(agent_entry_name(Platform::MacosAarch64), "depot");
    }
}
