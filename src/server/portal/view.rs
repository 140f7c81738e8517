//! What the templates see: the API's views ([`crate::service::views`]) arranged for reading,
//! with sizes in words and the adoption chart laid out. Nothing here reads a store.

use crate::domain::{OrgCode, Platform, Sha256, Version};
use crate::service::views::{download_path, rfc3339, PackageView};
use crate::service::BuildReport;
use crate::store::{Overlay, Package};
use serde::Serialize;

/// `1536` → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One downloadable installer.
#[derive(Debug, Serialize)]
pub struct Installer {
    #[serde(flatten)]
    pub package: PackageView,
    pub size_text: String,
}

impl From<&Package> for Installer {
    fn from(p: &Package) -> Self {
        Installer {
            package: PackageView::from(p),
            size_text: human_size(p.size),
        }
    }
}

/// One overlay file of an org, as its page lists it (never its content).
#[derive(Debug, Serialize)]
pub struct OverlayFile {
    pub name: String,
    pub size: usize,
    pub size_text: String,
    pub sha256: String,
    pub updated_at: String,
}

impl From<&Overlay> for OverlayFile {
    fn from(o: &Overlay) -> Self {
        OverlayFile {
            name: o.name.to_string(),
            size: o.bytes.len(),
            size_text: human_size(o.bytes.len() as u64),
            sha256: Sha256::digest(&o.bytes).to_hex(),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

/// What a change rebuilt, in a sentence: `Rebuilt 2 packages: a.zip, b.zip; 4 unchanged.`
pub fn rebuilt(report: &BuildReport) -> String {
    let mut text = rebuilt_packages(report);
    text.push_str(&failures(report));
    text
}

/// ` Not built: org physics (1.2.0 windows-x86_64): why.` for each failed org, or nothing.
pub fn failures(report: &BuildReport) -> String {
    report
        .failed
        .iter()
        .map(|f| {
            format!(
                " Not built: org {} ({} {}): {}.",
                f.org, f.version, f.platform, f.error
            )
        })
        .collect()
}

fn rebuilt_packages(report: &BuildReport) -> String {
    let built: Vec<&str> = report.built.iter().map(|p| p.file_name.as_str()).collect();
    if built.is_empty() {
        return format!(
            "No package needed rebuilding ({} unchanged).",
            report.unchanged
        );
    }
    format!(
        "Rebuilt {} package{}: {}{}.",
        built.len(),
        if built.len() == 1 { "" } else { "s" },
        built.join(", "),
        if report.unchanged > 0 {
            format!("; {} unchanged", report.unchanged)
        } else {
            String::new()
        }
    )
}

/// An org's installers of one release.
#[derive(Debug, Serialize)]
pub struct ReleaseInstallers {
    pub version: String,
    pub yanked: bool,
    /// Why it was yanked.
    pub yank_reason: Option<String>,
    /// Its rollout on the org's channel: `complete`, `rolling out (10%)`, `paused at 50%`, `yanked`.
    pub rollout: String,
    /// The release new machines should be installed from (`latest`).
    pub recommended: bool,
    pub sums_url: String,
    pub installers: Vec<Installer>,
}

/// What the org page says about a release besides its packages.
#[derive(Debug, Default)]
pub struct ReleaseState {
    pub yank_reason: Option<String>,
    pub rollout: String,
    pub recommended: bool,
}

/// Packages grouped by release, newest release first, platforms in their fixed order.
pub fn group_by_release(
    org: &OrgCode,
    mut packages: Vec<Package>,
    state: impl Fn(&Version) -> ReleaseState,
) -> Vec<ReleaseInstallers> {
    packages.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| platform_rank(a.platform).cmp(&platform_rank(b.platform)))
    });
    let mut groups: Vec<ReleaseInstallers> = Vec::new();
    for p in &packages {
        match groups.last_mut() {
            Some(g) if g.version == p.version.to_string() => g.installers.push(p.into()),
            _ => groups.push({
                let state = state(&p.version);
                ReleaseInstallers {
                    version: p.version.to_string(),
                    yanked: state.yank_reason.is_some(),
                    yank_reason: state.yank_reason,
                    rollout: state.rollout,
                    recommended: state.recommended,
                    sums_url: download_path(org, &p.version, "SHA256SUMS"),
                    installers: vec![p.into()],
                }
            }),
        }
    }
    groups
}

pub fn platform_rank(p: Platform) -> usize {
    Platform::ALL
        .iter()
        .position(|q| *q == p)
        .unwrap_or(usize::MAX)
}

/// One bar of the version adoption chart, laid out in the SVG's coordinates.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bar {
    pub label: String,
    pub count: u64,
    pub y: u32,
    pub text_y: u32,
    pub width: u32,
    pub count_x: u32,
}

/// The adoption chart: one bar per version, newest first, "unknown" last.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub bars: Vec<Bar>,
    /// The SVG's `viewBox` size.
    pub width: u32,
    pub height: u32,
    pub bar_x: u32,
    pub bar_height: u32,
    pub total: u64,
}

// A narrow drawing (400 units for 13-unit text), so that scaled down to a phone's width the
// labels stay readable; the stylesheet caps how wide it grows on a laptop.
const BAR_HEIGHT: u32 = 22;
const BAR_GAP: u32 = 8;
const LABEL_WIDTH: u32 = 90;
const BAR_AREA: u32 = 250;
const CHART_WIDTH: u32 = 400;

pub fn adoption_chart(counts: impl IntoIterator<Item = (String, u64)>) -> Chart {
    let mut rows: Vec<(Option<Version>, String, u64)> = counts
        .into_iter()
        .map(|(label, n)| (Version::parse(&label).ok(), label, n))
        .collect();
    // Versions newest first; labels that are not versions ("unknown") after them.
    rows.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => y.cmp(x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let max = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let bars: Vec<Bar> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (_, label, count))| {
            let y = i as u32 * (BAR_HEIGHT + BAR_GAP);
            // A version with any device gets at least a sliver, so it is never invisible.
            let width = ((count as f64 / max as f64) * f64::from(BAR_AREA)).round() as u32;
            let width = if count > 0 { width.max(2) } else { 0 };
            Bar {
                label,
                count,
                y,
                text_y: y + BAR_HEIGHT / 2 + 5,
                width,
                count_x: LABEL_WIDTH + width + 6,
            }
        })
        .collect();
    Chart {
        width: CHART_WIDTH,
        height: (bars.len() as u32 * (BAR_HEIGHT + BAR_GAP)).max(BAR_HEIGHT),
        bar_x: LABEL_WIDTH,
        bar_height: BAR_HEIGHT,
        total: bars.iter().map(|b| b.count).sum(),
        bars,
    }
}

/// Text-area lines: trimmed, empty ones dropped.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `KEY=value` lines into settings; a line without `=` is refused, naming it.
pub fn settings_lines(
    text: &str,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    let mut settings = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "settings line {}: expected KEY=value, got {line:?}",
                i + 1
            ));
        };
        if settings
            .insert(key.trim().to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!(
                "settings line {}: {} is set twice",
                i + 1,
                key.trim()
            ));
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn chart_orders_by_version_and_scales() {
        let chart = adoption_chart([
            ("unknown".to_string(), 1),
            ("11.2.1".to_string(), 10),
            ("11.10.0".to_string(), 5),
        ]);
        let labels: Vec<&str> = chart.bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["11.10.0", "11.2.1", "unknown"]);
        assert_eq!(chart.bars[1].width, BAR_AREA);
        assert_eq!(chart.bars[0].width, BAR_AREA / 2);
        assert_eq!(chart.bars[2].width, BAR_AREA / 10);
        assert_eq!(chart.bars[1].count_x, LABEL_WIDTH + BAR_AREA + 6);
        assert!(
            chart.bars[1].count_x + 6 * 8 <= chart.width,
            "a 6-digit count fits"
        );
        assert_eq!(chart.total, 16);
        assert!(chart.bars[2].y > chart.bars[1].y);
        assert!(adoption_chart([]).bars.is_empty());
    }

    #[test]
    fn rebuild_reports_read_as_sentences() {
        let mut report = BuildReport {
            unchanged: 3,
            ..Default::default()
        };
        assert_eq!(
            rebuilt(&report),
            "No package needed rebuilding (3 unchanged)."
        );
        let package = |name: &str| crate::service::BuiltPackage {
            org: OrgCode::default_org(),
            version: Version::parse("1.0.0").unwrap(),
            platform: Platform::LinuxX86_64,
            file_name: name.into(),
            size: 1,
            sha256: Sha256::digest(b""),
        };
        report.built = vec![package("a.zip")];
        assert_eq!(rebuilt(&report), "Rebuilt 1 package: a.zip; 3 unchanged.");
        report.built.push(package("b.zip"));
        report.unchanged = 0;
        assert_eq!(rebuilt(&report), "Rebuilt 2 packages: a.zip, b.zip.");
    }

    #[test]
    fn settings_and_lines_parse() {
        assert_eq!(lines(" a \n\n b\r\n"), ["a", "b"]);
        let s = settings_lines("A=1\n\n B = x=y \n").unwrap();
        assert_eq!(s["A"], "1");
        assert_eq!(s["B"], "x=y");
        assert!(settings_lines("A=1\nnope").unwrap_err().contains("line 2"));
        assert!(settings_lines("A=1\nA=2").unwrap_err().contains("twice"));
    }
}
