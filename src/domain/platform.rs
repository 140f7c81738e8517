//! The closed set of platforms a payload is built for (CONTRACT 2).

use super::{DomainError, Result};
use serde::{Deserialize, Serialize};

/// The OS family: the text before `-` in a platform name; it selects the template folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Windows,
    Macos,
    Linux,
}

impl Os {
    pub const ALL: [Os; 3] = [Os::Windows, Os::Macos, Os::Linux];

    pub fn as_str(self) -> &'static str {
        match self {
            Os::Windows => "windows",
            Os::Macos => "macos",
            Os::Linux => "linux",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Platform {
    #[serde(rename = "windows-x86_64")]
    WindowsX86_64,
    #[serde(rename = "windows-aarch64")]
    WindowsAarch64,
    #[serde(rename = "macos-x86_64")]
    MacosX86_64,
    #[serde(rename = "macos-aarch64")]
    MacosAarch64,
    #[serde(rename = "linux-x86_64")]
    LinuxX86_64,
    #[serde(rename = "linux-aarch64")]
    LinuxAarch64,
}

impl Platform {
    pub const ALL: [Platform; 6] = [
        Platform::WindowsX86_64,
        Platform::WindowsAarch64,
        Platform::MacosX86_64,
        Platform::MacosAarch64,
        Platform::LinuxX86_64,
        Platform::LinuxAarch64,
    ];

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            DomainError::new(
                "platform",
                s,
                "must be one of windows-x86_64, windows-aarch64, macos-x86_64, macos-aarch64, linux-x86_64, linux-aarch64",
            )
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::WindowsX86_64 => "windows-x86_64",
            Platform::WindowsAarch64 => "windows-aarch64",
            Platform::MacosX86_64 => "macos-x86_64",
            Platform::MacosAarch64 => "macos-aarch64",
            Platform::LinuxX86_64 => "linux-x86_64",
            Platform::LinuxAarch64 => "linux-aarch64",
        }
    }

    pub fn os(self) -> Os {
        match self {
            Platform::WindowsX86_64 | Platform::WindowsAarch64 => Os::Windows,
            Platform::MacosX86_64 | Platform::MacosAarch64 => Os::Macos,
            Platform::LinuxX86_64 | Platform::LinuxAarch64 => Os::Linux,
        }
    }

    pub fn arch(self) -> Arch {
        match self {
            Platform::WindowsX86_64 | Platform::MacosX86_64 | Platform::LinuxX86_64 => Arch::X86_64,
            _ => Arch::Aarch64,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_os_is_the_prefix() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()).unwrap(), p);
            assert!(p.as_str().starts_with(&format!("{}-", p.os().as_str())));
            assert!(p.as_str().ends_with(p.arch().as_str()));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
    }

    #[test]
    fn rejects_unknown() {
        for bad in [
            "",
            "windows",
            "Windows-x86_64",
            "linux-arm64",
            "linux-x86_64 ",
            "../linux-x86_64",
        ] {
            assert_eq!(Platform::parse(bad).unwrap_err().field, "platform");
        }
    }
}
