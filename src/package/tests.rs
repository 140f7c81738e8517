//! Packages read back by three independent readers: Info-ZIP `unzip`, Python's `zipfile` and the
//! `zip` crate. Tests that need an external tool skip when it is missing, unless `CI=true`.

use super::payload::write_payload_part_at;
use super::tail::build_tail_at;
use super::zip_layout::{
    local_header_len, write_local_header, EntryRecord, Timestamp, Zip64Threshold,
};
use super::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// 2024-03-05T14:07:08Z: an even second, which the DOS fields hold exactly.
const MODIFIED: i64 = 1_709_647_628;

fn name(s: &str) -> EntryName {
    EntryName::parse(s).unwrap()
}

fn entry(n: &str, bytes: &[u8]) -> PackageEntry {
    PackageEntry {
        name: name(n),
        bytes: bytes.to_vec(),
    }
}

/// A department's entries, deliberately out of order, with nested names and both modes.
fn department_entries() -> Vec<PackageEntry> {
    vec![
        entry("macos/Install.command", b"#!/bin/sh\necho install\n"),
        entry(
            "deploy.properties",
            b"DEPLOYMENT_URL=https://depot.example.edu\n",
        ),
        entry("install.sh", b"#!/bin/sh\nexec ./client -q\n"),
        entry(
            "custom/detect-user.sh",
            b"#!/bin/sh\necho AGENT_USERNAME=$USER\n",
        ),
        entry("README.txt", b"Department installer.\n"),
        entry("depot-package.json", b"{}\n"),
        entry("empty.txt", b""),
        entry("a-b.txt", b"plain text"),
    ]
}

/// Pseudo-random bytes, so that a misplaced offset cannot go unnoticed.
fn payload_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes the payload part through the public two-pass path, at the given Zip64 threshold.
fn payload_part(file_name: &str, payload: &[u8], zip64: Zip64Threshold) -> (PayloadPart, Vec<u8>) {
    let facts = scan_payload(&mut &payload[..]).unwrap();
    let mut bytes = Vec::new();
    let part_len = write_payload_part_at(
        &name(file_name),
        &facts,
        MODIFIED,
        &mut &payload[..],
        &mut bytes,
        zip64,
    )
    .unwrap();
    let part = PayloadPart {
        file_name: name(file_name),
        size: facts.size,
        sha256: facts.sha256,
        crc32: facts.crc32,
        blob: Sha256::digest(&bytes),
        part_len,
        modified: MODIFIED,
    };
    (part, bytes)
}

fn package(payload: &[u8], entries: &[PackageEntry], zip64: Zip64Threshold) -> Vec<u8> {
    let (part, mut bytes) = payload_part("client.msi", payload, zip64);
    bytes.extend(build_tail_at(&part, entries, zip64).unwrap());
    bytes
}

/// What a package must hold: the payload first, then the entries by name.
fn expected_contents(payload: &[u8], entries: &[PackageEntry]) -> Vec<(String, Vec<u8>)> {
    let mut sorted: Vec<_> = entries
        .iter()
        .map(|e| (e.name.to_string(), e.bytes.clone()))
        .collect();
    sorted.sort();
    std::iter::once(("client.msi".to_string(), payload.to_vec()))
        .chain(sorted)
        .collect()
}

fn expected_mode(name: &str) -> u32 {
    if name.ends_with(".sh") || name.ends_with(".command") {
        0o100755
    } else {
        0o100644
    }
}

fn tool_available(tool: &str, probe: &str) -> bool {
    let found = Command::new(tool)
        .arg(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required when CI=true"
        );
        eprintln!("skipping the {tool} check: {tool} is not installed");
    }
    found
}

fn write_temp(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("package.zip");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `unzip -t` on the whole package, or on the named members only.
fn assert_unzip_tests(path: &Path, members: &[&str]) {
    if !tool_available("unzip", "-v") {
        return;
    }
    let out = Command::new("unzip")
        .arg("-t")
        .arg(path)
        .args(members)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("No errors detected"),
        "unzip -t failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

const PYTHON_CHECK: &str = r#"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    if sys.argv[2] == "full":
        assert z.testzip() is None
    print(json.dumps([[i.filename, i.file_size, i.external_attr >> 16, list(i.date_time), i.create_system]
                      for i in z.infolist()]))
    for member in sys.argv[3:]:
        z.read(member)
"#;

/// Python's `zipfile`: CRC of every member (unless `full` is false), then the listing.
fn assert_python_reads(path: &Path, expected: &[(String, Vec<u8>)], full: bool, read: &[&str]) {
    if !tool_available("python3", "--version") {
        return;
    }
    let out = Command::new("python3")
        .args(["-c", PYTHON_CHECK])
        .arg(path)
        .arg(if full { "full" } else { "listing" })
        .args(read)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python zipfile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: Vec<(String, u64, u32, [i32; 6], u32)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<_> = expected
        .iter()
        .map(|(n, b)| {
            (
                n.clone(),
                b.len() as u64,
                expected_mode(n),
                [2024, 3, 5, 14, 7, 8],
                3,
            )
        })
        .collect();
    assert_eq!(listing, want);
}

/// The zip crate reads every entry (checking each CRC as it does), in order, with mode and time.
fn assert_zip_crate_reads(bytes: &[u8], expected: &[(String, Vec<u8>)]) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), expected.len());
    for (i, (want_name, want_bytes)) in expected.iter().enumerate() {
        let mut file = archive.by_index(i).unwrap();
        assert_eq!(file.name(), want_name);
        assert_eq!(file.compression(), zip::CompressionMethod::Stored);
        assert_eq!(
            file.unix_mode(),
            Some(expected_mode(want_name)),
            "{want_name}"
        );
        let t = file.last_modified().unwrap();
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2024, 3, 5, 14, 7, 8)
        );
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        assert!(content == *want_bytes, "{want_name}: content differs");
    }
}

fn assert_all_readers_accept(bytes: &[u8], expected: &[(String, Vec<u8>)]) {
    assert_zip_crate_reads(bytes, expected);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), bytes);
    assert_unzip_tests(&path, &[]);
    assert_python_reads(&path, expected, true, &[]);
}

#[test]
fn package_reads_back_in_every_reader() {
    let payload = payload_bytes(300_001);
    let entries = department_entries();
    let bytes = package(&payload, &entries, Zip64Threshold::STANDARD);
    assert_all_readers_accept(&bytes, &expected_contents(&payload, &entries));
}

#[test]
fn unzip_extracts_payload_byte_identical_with_mode_and_time() {
    if !tool_available("unzip", "-v") {
        return;
    }
    let payload = payload_bytes(70_000);
    let bytes = package(&payload, &department_entries(), Zip64Threshold::STANDARD);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), &bytes);
    let out_dir = dir.path().join("out");
    let status = Command::new("unzip")
        .arg("-q")
        .arg(&path)
        .arg("-d")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::read(out_dir.join("client.msi")).unwrap(), payload);
    for (file, mode) in [
        ("client.msi", 0o644),
        ("install.sh", 0o755),
        ("macos/Install.command", 0o755),
    ] {
        let meta = std::fs::metadata(out_dir.join(file)).unwrap();
        // The umask may only clear bits; 022 is the usual one.
        assert_eq!(
            meta.permissions().mode() & 0o777 & !0o022,
            mode & !0o022,
            "{file}"
        );
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(
            mtime.as_secs() as i64,
            MODIFIED,
            "{file}: the UT field gives the exact time"
        );
    }
}

#[test]
fn same_inputs_give_the_same_bytes_in_any_order() {
    let payload = payload_bytes(10_000);
    let entries = department_entries();
    let once = package(&payload, &entries, Zip64Threshold::STANDARD);
    let again = package(&payload, &entries, Zip64Threshold::STANDARD);
    let mut reversed = entries.clone();
    reversed.reverse();
    let reordered = package(&payload, &reversed, Zip64Threshold::STANDARD);
    assert!(once == again && once == reordered);
    let mut changed = entries;
    changed[0].bytes.push(b'\n');
    assert!(package(&payload, &changed, Zip64Threshold::STANDARD) != once);
}

#[test]
fn forced_zip64_everywhere_is_read_by_every_reader() {
    // Threshold 0: every size, offset and count goes through the Zip64 records.
    let payload = payload_bytes(5_000);
    let entries = department_entries();
    let bytes = package(&payload, &entries, Zip64Threshold(0));
    assert_all_readers_accept(&bytes, &expected_contents(&payload, &entries));
}

#[test]
fn forced_zip64_like_a_huge_payload_is_read_by_every_reader() {
    // The shape of a > 4 GiB payload: its sizes overflow, the small entries' sizes do not, their
    // offsets and the central directory's offset do.
    let payload = payload_bytes(5_000);
    let entries = department_entries();
    let bytes = package(&payload, &entries, Zip64Threshold(4_000));
    assert!(
        bytes.windows(4).any(|w| w == b"PK\x06\x06"),
        "a Zip64 end record"
    );
    assert_all_readers_accept(&bytes, &expected_contents(&payload, &entries));
}

#[test]
fn tail_cost_does_not_depend_on_payload_size() {
    let entries = department_entries();
    let (small, small_bytes) = payload_part(
        "client.msi",
        &payload_bytes(1 << 20),
        Zip64Threshold::STANDARD,
    );
    let (large, large_bytes) = payload_part(
        "client.msi",
        &vec![0x5a; 64 << 20],
        Zip64Threshold::STANDARD,
    );
    // `build_tail` takes no reader: it has no way to touch the part's bytes.
    let small_tail = build_tail(&small, &entries).unwrap();
    let large_tail = build_tail(&large, &entries).unwrap();
    assert_eq!(small_tail.len(), large_tail.len());
    assert!(
        small_tail.len() < 4096,
        "tail is {} bytes",
        small_tail.len()
    );

    let rounds = 2_000;
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(build_tail(std::hint::black_box(&large), &entries).unwrap());
    }
    let per_tail = start.elapsed() / rounds;
    eprintln!(
        "one tail ({} entries, {} bytes) for a 64 MiB payload: {per_tail:?}",
        entries.len(),
        large_tail.len()
    );
    assert!(per_tail.as_millis() < 5, "{per_tail:?} per tail");

    for (part, tail, payload) in [
        (small_bytes, small_tail, payload_bytes(1 << 20)),
        (large_bytes, large_tail, vec![0x5a; 64 << 20]),
    ] {
        let whole = [part, tail].concat();
        assert_zip_crate_reads(&whole, &expected_contents(&payload, &entries));
    }
}

/// A package with a real > 4 GiB payload of zeros, as a sparse file: the part's header comes from
/// the same encoder `write_payload_part` uses, and the CRC of the zeros is combined, not computed.
fn sparse_package(dir: &Path, entries: &[PackageEntry]) -> (std::path::PathBuf, u64) {
    let size: u64 = (4 << 30) + (3 << 20) + 17;
    let mut chunk = crc32fast::Hasher::new();
    chunk.update(&vec![0u8; 1 << 20]);
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..(size >> 20) {
        crc.combine(&chunk);
    }
    crc.update(&vec![0u8; (size & ((1 << 20) - 1)) as usize]);
    let record = EntryRecord {
        name: "client.msi",
        crc32: crc.finalize(),
        size,
        offset: 0,
    };
    let time = Timestamp::from_unix(MODIFIED);
    let mut header = Vec::new();
    write_local_header(&record, time, Zip64Threshold::STANDARD, &mut header);
    let part = PayloadPart {
        file_name: name("client.msi"),
        size,
        // The tail never reads the payload's digest; hashing 4 GiB here would only cost time.
        sha256: Sha256::digest(b"not computed for this test"),
        crc32: record.crc32,
        blob: Sha256::digest(b"not stored for this test"),
        part_len: local_header_len(&record, time, Zip64Threshold::STANDARD) + size,
        modified: MODIFIED,
    };
    let path = dir.join("big.zip");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&header).unwrap();
    file.set_len(part.part_len).unwrap();
    file.seek(SeekFrom::End(0)).unwrap();
    file.write_all(&build_tail(&part, entries).unwrap())
        .unwrap();
    (path, size)
}

#[test]
fn real_zip64_package_over_4_gib_has_readable_entries_beyond_4_gib() {
    let entries = department_entries();
    let dir = tempfile::tempdir().unwrap();
    let (path, size) = sparse_package(dir.path(), &entries);

    // The zip crate reads the Zip64 central directory and every small entry, all past 4 GiB.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(archive.by_index(0).unwrap().size(), size);
    let expected = expected_contents(&[], &entries);
    for (i, (want_name, want_bytes)) in expected.iter().enumerate().skip(1) {
        let mut file = archive.by_index(i).unwrap();
        assert_eq!(file.name(), want_name);
        assert!(file.header_start() > 4 << 30);
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        assert_eq!(&content, want_bytes);
    }
    // unzip and Python check the small members only; the full check is the ignored test below.
    let small: Vec<&str> = expected.iter().skip(1).map(|(n, _)| n.as_str()).collect();
    assert_unzip_tests(&path, &small);
    if tool_available("python3", "--version") {
        let out = Command::new("python3")
            .args(["-c", PYTHON_CHECK])
            .arg(&path)
            .arg("listing")
            .args(&small)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing: Vec<(String, u64, u32, [i32; 6], u32)> =
            serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listing[0].0, "client.msi");
        assert_eq!(listing[0].1, size);
        assert_eq!(listing.len(), expected.len());
    }
}

#[test]
#[ignore = "reads 4 GiB through unzip -t and Python's testzip: about 40 s on 2 cores"]
fn real_zip64_package_over_4_gib_passes_full_crc_checks() {
    let entries = department_entries();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sparse_package(dir.path(), &entries);
    assert_unzip_tests(&path, &[]);
    if tool_available("python3", "--version") {
        let status = Command::new("python3")
            .args(["-c", PYTHON_CHECK])
            .arg(&path)
            .arg("full")
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn refuses_names_that_cannot_coexist() {
    let (part, _) = payload_part("client.msi", b"payload", Zip64Threshold::STANDARD);
    let cases = [
        (
            vec![entry("a.txt", b"1"), entry("a.txt", b"2")],
            "appears more than once",
        ),
        (vec![entry("client.msi", b"x")], "payload's name"),
        (
            vec![entry("custom", b"x"), entry("custom/logo.png", b"y")],
            "both a file and the folder",
        ),
        (
            vec![entry("client.msi/x", b"y")],
            "both a file and the folder",
        ),
    ];
    for (entries, message) in cases {
        let err = build_tail(&part, &entries).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
    // Folders shared by several files are fine.
    build_tail(
        &part,
        &[
            entry("custom/a", b""),
            entry("custom/b", b""),
            entry("custom-x", b""),
        ],
    )
    .unwrap();
}

#[test]
fn refuses_a_part_that_does_not_match_its_description() {
    let (part, _) = payload_part("client.msi", b"payload", Zip64Threshold::STANDARD);
    for wrong in [
        PayloadPart {
            part_len: part.part_len + 1,
            ..part.clone()
        },
        PayloadPart {
            size: part.size + 1,
            ..part.clone()
        },
        PayloadPart {
            file_name: name("other.msi"),
            ..part.clone()
        },
    ] {
        let err = build_tail(&wrong, &[]).unwrap_err();
        assert!(matches!(err, PackageError::PartMismatch { .. }), "{err}");
    }
}
