//! The bytes of the zip records depot writes, encoded by hand against PKWARE's APPNOTE.TXT 6.3.10:
//! local file header (4.3.7), central directory header (4.3.12), Zip64 extended information extra
//! field (4.5.3), Info-ZIP extended timestamp extra field (4.6.1 / Info-ZIP "UT"), Zip64 end of
//! central directory record (4.3.14) and locator (4.3.15), end of central directory record (4.3.16).
//!
//! Why not the `zip` crate's writer: a package is `[payload part][tail]`, and the payload part is
//! written once per release and platform, then stored for the life of the release, while tails are
//! built later, possibly by a newer binary. The part's local header and the tail's central
//! directory must therefore agree byte for byte on a format that depot itself pins. `ZipWriter`
//! cannot produce that split: it learns an entry's CRC and size only by having the data written
//! through it (or by `raw_copy_file`, which copies the data), and `new_append` needs a finished
//! archive with a central directory that already describes the payload, that is, this very code.
//! Its exact output (extra fields, version fields) is also not a promise kept across releases,
//! and a change there would silently change every package's bytes and signatures.
//!
//! Everything here is pure: it appends to a `Vec<u8>` and never reads or writes anything else.
//! Every entry is Stored (method 0) with its sizes and CRC in the local header, so no data
//! descriptors. Only one disk, no comments, no encryption.

/// A 32-bit size or offset field, or a 16-bit count, that reaches this value moves into the
/// Zip64 records (APPNOTE 4.4.8: the value 0xFFFFFFFF itself is the marker, so it must move too).
/// Tests lower it to force the Zip64 paths without writing 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Zip64Threshold(pub u64);

impl Zip64Threshold {
    pub const STANDARD: Self = Self(0xFFFF_FFFF);

    fn overflows(self, value: u64) -> bool {
        value >= self.0
    }

    fn count_overflows(self, count: u64) -> bool {
        count >= self.0.min(0xFFFF)
    }
}

const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;

const ZIP64_EXTRA_ID: u16 = 0x0001;
const TIMESTAMP_EXTRA_ID: u16 = 0x5455;

/// "Made by" Unix (host 3, APPNOTE 4.4.2.2) with spec 4.5, so readers honour the Unix mode in the
/// external attributes.
const VERSION_MADE_BY: u16 = (3 << 8) | 45;
const VERSION_NEEDED_STORED: u16 = 20;
const VERSION_NEEDED_ZIP64: u16 = 45;
const MARKER_32: u32 = 0xFFFF_FFFF;
const MARKER_16: u16 = 0xFFFF;
const S_IFREG: u32 = 0o100_000;

/// The time every entry of a package carries: the release's creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timestamp {
    dos_time: u16,
    dos_date: u16,
    /// For the Info-ZIP "UT" field, which carries the exact UTC time that the DOS fields (local
    /// time of no stated zone, 2-second steps) cannot; absent when it does not fit its 32 bits.
    unix: Option<u32>,
}

impl Timestamp {
    /// DOS fields in UTC, clamped to the range they can express (1980-01-01 to 2107-12-31).
    pub fn from_unix(seconds: i64) -> Self {
        const DOS_MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
        const DOS_MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
        let t = time::OffsetDateTime::from_unix_timestamp(seconds.clamp(DOS_MIN, DOS_MAX))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        // Both casts are exact: the clamp keeps year - 1980 within 0..=127.
        let dos_date = ((t.year() - 1980) as u16) << 9
            | u16::from(u8::from(t.month())) << 5
            | u16::from(t.day());
        let dos_time =
            u16::from(t.hour()) << 11 | u16::from(t.minute()) << 5 | u16::from(t.second() / 2);
        let unix = u32::try_from(seconds)
            .ok()
            .filter(|s| *s <= i32::MAX as u32);
        Self {
            dos_time,
            dos_date,
            unix,
        }
    }
}

/// What both headers of one Stored entry say about it.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryRecord<'a> {
    pub name: &'a str,
    pub crc32: u32,
    /// Compressed and uncompressed size alike: entries are Stored.
    pub size: u64,
    /// Offset of the entry's local header from the start of the package.
    pub offset: u64,
}

impl EntryRecord<'_> {
    /// CONTRACT 4: scripts and the agent are executable, everything else is not.
    pub fn unix_mode(&self) -> u32 {
        // The depot agent's executable (CONTRACT 7a) is run straight from the unpacked package.
        if self.name.ends_with(".sh")
            || self.name.ends_with(".command")
            || matches!(self.name, "depot" | "depot.exe")
        {
            0o755
        } else {
            0o644
        }
    }

    fn version_needed(&self, t: Zip64Threshold) -> u16 {
        if t.overflows(self.size) || t.overflows(self.offset) {
            VERSION_NEEDED_ZIP64
        } else {
            VERSION_NEEDED_STORED
        }
    }

    fn name_len(&self) -> u16 {
        // `EntryName` caps names at 128 bytes.
        u16::try_from(self.name.len()).unwrap_or(u16::MAX)
    }
}

/// Length of the local header `write_local_header` writes for `entry`.
pub(super) fn local_header_len(entry: &EntryRecord<'_>, time: Timestamp, t: Zip64Threshold) -> u64 {
    30 + entry.name.len() as u64 + u64::from(local_extra_len(entry, time, t))
}

fn local_extra_len(entry: &EntryRecord<'_>, time: Timestamp, t: Zip64Threshold) -> u16 {
    let zip64 = if t.overflows(entry.size) { 4 + 16 } else { 0 };
    zip64 + timestamp_extra_len(time)
}

fn timestamp_extra_len(time: Timestamp) -> u16 {
    if time.unix.is_some() {
        4 + 5
    } else {
        0
    }
}

pub(super) fn write_local_header(
    entry: &EntryRecord<'_>,
    time: Timestamp,
    t: Zip64Threshold,
    out: &mut Vec<u8>,
) {
    let zip64 = t.overflows(entry.size);
    let size32 = if zip64 { MARKER_32 } else { entry.size as u32 };
    put32(out, LOCAL_HEADER_SIG);
    put16(out, entry.version_needed(t));
    put16(out, 0); // flags: no data descriptor, no encryption
    put16(out, 0); // method: Stored
    put16(out, time.dos_time);
    put16(out, time.dos_date);
    put32(out, entry.crc32);
    put32(out, size32);
    put32(out, size32);
    put16(out, entry.name_len());
    put16(out, local_extra_len(entry, time, t));
    out.extend_from_slice(entry.name.as_bytes());
    if zip64 {
        // In a local header the field holds both sizes, whatever overflowed (APPNOTE 4.5.3).
        put16(out, ZIP64_EXTRA_ID);
        put16(out, 16);
        put64(out, entry.size);
        put64(out, entry.size);
    }
    write_timestamp_extra(time, out);
}

pub(super) fn write_central_header(
    entry: &EntryRecord<'_>,
    time: Timestamp,
    t: Zip64Threshold,
    out: &mut Vec<u8>,
) {
    // In the central directory only the fields that overflowed move, in this order (4.5.3).
    let size_moves = t.overflows(entry.size);
    let offset_moves = t.overflows(entry.offset);
    let zip64_len = 8 * (2 * u16::from(size_moves) + u16::from(offset_moves));
    let zip64_extra_len = if zip64_len > 0 { 4 + zip64_len } else { 0 };
    let size32 = if size_moves {
        MARKER_32
    } else {
        entry.size as u32
    };
    let offset32 = if offset_moves {
        MARKER_32
    } else {
        entry.offset as u32
    };

    put32(out, CENTRAL_HEADER_SIG);
    put16(out, VERSION_MADE_BY);
    put16(out, entry.version_needed(t));
    put16(out, 0); // flags
    put16(out, 0); // method: Stored
    put16(out, time.dos_time);
    put16(out, time.dos_date);
    put32(out, entry.crc32);
    put32(out, size32);
    put32(out, size32);
    put16(out, entry.name_len());
    put16(out, zip64_extra_len + timestamp_extra_len(time));
    put16(out, 0); // comment length
    put16(out, 0); // disk number start
    put16(out, 0); // internal attributes
    put32(out, (S_IFREG | entry.unix_mode()) << 16);
    put32(out, offset32);
    out.extend_from_slice(entry.name.as_bytes());
    if zip64_len > 0 {
        put16(out, ZIP64_EXTRA_ID);
        put16(out, zip64_len);
        if size_moves {
            put64(out, entry.size);
            put64(out, entry.size);
        }
        if offset_moves {
            put64(out, entry.offset);
        }
    }
    write_timestamp_extra(time, out);
}

fn write_timestamp_extra(time: Timestamp, out: &mut Vec<u8>) {
    if let Some(mtime) = time.unix {
        put16(out, TIMESTAMP_EXTRA_ID);
        put16(out, 5);
        out.push(1); // flags: modification time present
        put32(out, mtime);
    }
}

/// The end records for a central directory of `count` headers, `cd_size` bytes long, starting at
/// `cd_offset`: the Zip64 record and locator when any value overflows, then the classic record,
/// whose overflowing fields hold the marker that sends readers to the Zip64 record.
pub(super) fn write_end_records(
    count: u64,
    cd_offset: u64,
    cd_size: u64,
    t: Zip64Threshold,
    out: &mut Vec<u8>,
) {
    let count_moves = t.count_overflows(count);
    let size_moves = t.overflows(cd_size);
    let offset_moves = t.overflows(cd_offset);
    if count_moves || size_moves || offset_moves {
        let zip64_eocd_offset = cd_offset + cd_size;
        put32(out, ZIP64_EOCD_SIG);
        put64(out, 44); // size of the rest of the record, without extensible data
        put16(out, VERSION_MADE_BY);
        put16(out, VERSION_NEEDED_ZIP64);
        put32(out, 0); // this disk
        put32(out, 0); // disk where the central directory starts
        put64(out, count);
        put64(out, count);
        put64(out, cd_size);
        put64(out, cd_offset);

        put32(out, ZIP64_LOCATOR_SIG);
        put32(out, 0); // disk holding the Zip64 end record
        put64(out, zip64_eocd_offset);
        put32(out, 1); // total disks
    }
    let count16 = if count_moves { MARKER_16 } else { count as u16 };
    put32(out, EOCD_SIG);
    put16(out, 0); // this disk
    put16(out, 0); // disk where the central directory starts
    put16(out, count16);
    put16(out, count16);
    put32(
        out,
        if size_moves {
            MARKER_32
        } else {
            cd_size as u32
        },
    );
    put32(
        out,
        if offset_moves {
            MARKER_32
        } else {
            cd_offset as u32
        },
    );
    put16(out, 0); // comment length
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_known_answers() {
        // 2024-03-05T14:07:09Z: seconds are stored halved.
        let t = Timestamp::from_unix(1_709_647_629);
        assert_eq!(t.dos_date, (44 << 9) | (3 << 5) | 5);
        assert_eq!(t.dos_time, (14 << 11) | (7 << 5) | 4);
        assert_eq!(t.unix, Some(1_709_647_629));

        let early = Timestamp::from_unix(0);
        assert_eq!((early.dos_date, early.dos_time), ((1 << 5) | 1, 0));
        assert_eq!(early.unix, Some(0));
        let late = Timestamp::from_unix(i64::MAX);
        assert_eq!(late.dos_date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(late.unix, None);
        assert_eq!(Timestamp::from_unix(-1).unix, None);
    }

    #[test]
    fn modes() {
        let rec = |name| EntryRecord {
            name,
            crc32: 0,
            size: 0,
            offset: 0,
        };
        assert_eq!(rec("install.sh").unix_mode(), 0o755);
        assert_eq!(rec("macos/Install.command").unix_mode(), 0o755);
        assert_eq!(rec("deploy.properties").unix_mode(), 0o644);
        assert_eq!(rec("install.sh.txt").unix_mode(), 0o644);
    }

    #[test]
    fn local_header_len_matches_what_is_written() {
        for size in [0, 10, 0xFFFF_FFFE, 0xFFFF_FFFF, 5 << 30] {
            for seconds in [1_700_000_000, -5] {
                let entry = EntryRecord {
                    name: "client.msi",
                    crc32: 7,
                    size,
                    offset: 0,
                };
                let time = Timestamp::from_unix(seconds);
                let mut out = Vec::new();
                write_local_header(&entry, time, Zip64Threshold::STANDARD, &mut out);
                assert_eq!(
                    out.len() as u64,
                    local_header_len(&entry, time, Zip64Threshold::STANDARD)
                );
            }
        }
    }

    #[test]
    fn classic_end_record_layout() {
        let mut out = Vec::new();
        write_end_records(3, 1000, 200, Zip64Threshold::STANDARD, &mut out);
        assert_eq!(
            out,
            [
                &EOCD_SIG.to_le_bytes()[..],
                &[0, 0, 0, 0, 3, 0, 3, 0],
                &200u32.to_le_bytes(),
                &1000u32.to_le_bytes(),
                &[0, 0]
            ]
            .concat()
        );
    }

    #[test]
    fn zip64_end_records_when_the_offset_overflows() {
        let mut out = Vec::new();
        write_end_records(3, 5 << 30, 200, Zip64Threshold::STANDARD, &mut out);
        assert_eq!(out.len(), 56 + 20 + 22);
        assert_eq!(&out[..4], &ZIP64_EOCD_SIG.to_le_bytes());
        assert_eq!(&out[48..56], &(5u64 << 30).to_le_bytes());
        assert_eq!(&out[56..60], &ZIP64_LOCATOR_SIG.to_le_bytes());
        assert_eq!(&out[64..72], &((5u64 << 30) + 200).to_le_bytes());
        let eocd = &out[76..];
        assert_eq!(&eocd[8..10], &3u16.to_le_bytes(), "the count still fits");
        assert_eq!(&eocd[12..16], &200u32.to_le_bytes(), "the size still fits");
        assert_eq!(&eocd[16..20], &MARKER_32.to_le_bytes());
    }
}
