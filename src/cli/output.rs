//! Presenting results: aligned tables for people, JSON for scripts, a progress bar on a terminal.

use crate::service::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// Writes to stdout. When the reader has gone (`depot release list | head -1`), the process ends
/// quietly with status 0, as ripgrep does: the output was not wanted any more. Any other write
/// error ends it with a one-line reason.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("depot: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr when it is a terminal; silent otherwise.
pub struct BuildBar(ProgressBar);

impl BuildBar {
    pub fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return BuildBar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} building packages {bar:40} {pos}/{len} ({per_sec}, {eta})",
        ) {
            bar.set_style(style);
        }
        BuildBar(bar)
    }
}

impl Progress for BuildBar {
    fn begin(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, packages: u64) {
        self.0.inc(packages);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
