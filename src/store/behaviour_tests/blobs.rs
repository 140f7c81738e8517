//! Blob storage: round trips, deduplication, uncommitted writes and ranges.

use super::*;

fn put(s: &dyn BlobStore, data: &[u8]) -> (BlobKey, u64) {
    let mut w = s.create().unwrap();
    // Pieces of uneven size, as a zip writer produces them.
    for piece in data.chunks(7777) {
        w.write_all(piece).unwrap();
    }
    w.commit().unwrap()
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn blob_round_trip(s: &dyn BlobStore) {
    let data = sample(1_000_003);
    let (key, size) = put(s, &data);
    assert_eq!(key, Sha256::digest(&data));
    assert_eq!(size, data.len() as u64);
    assert_eq!(s.size(&key).unwrap(), size);
    assert_eq!(s.read(&key).unwrap(), data);
    assert!(s.verify(&key).unwrap());
    assert_eq!(s.list().unwrap(), vec![key]);
    if let Some(mut file) = s.open_file(&key).unwrap() {
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut read).unwrap();
        assert_eq!(read, data);
    }
}

pub(crate) fn blob_empty(s: &dyn BlobStore) {
    let (key, size) = put(s, b"");
    assert_eq!(
        key.to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(size, 0);
    assert_eq!(s.read(&key).unwrap(), b"");
    assert_eq!(s.read_range(&key, 0, 0).unwrap(), b"");
}

pub(crate) fn blob_dedupe(s: &dyn BlobStore) {
    let (a, _) = put(s, b"same content");
    let (b, _) = put(s, b"same content");
    let (c, _) = put(s, b"other content");
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(s.list().unwrap(), expected);
    assert_eq!(s.read(&a).unwrap(), b"same content");
}

pub(crate) fn blob_uncommitted_leaves_nothing(s: &dyn BlobStore) {
    let mut w = s.create().unwrap();
    w.write_all(&sample(600_000)).unwrap();
    w.flush().unwrap();
    drop(w);
    assert!(s.list().unwrap().is_empty());
    assert!(matches!(
        s.read(&Sha256::digest(&sample(600_000))),
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) fn blob_read_range_bounds(s: &dyn BlobStore) {
    let data = sample(10_000);
    let (key, _) = put(s, &data);
    assert_eq!(s.read_range(&key, 0, 10_000).unwrap(), data);
    assert_eq!(s.read_range(&key, 2, 3).unwrap(), &data[2..5]);
    assert_eq!(s.read_range(&key, 9_990, 10).unwrap(), &data[9_990..]);
    assert_eq!(s.read_range(&key, 10_000, 0).unwrap(), b"");
    for (offset, len) in [
        (9_999, 2),
        (10_000, 1),
        (10_001, 0),
        (0, 10_001),
        (u64::MAX, 2),
        (2, u64::MAX),
    ] {
        assert!(
            s.read_range(&key, offset, len).is_err(),
            "{len} bytes at {offset}"
        );
    }
}

pub(crate) fn blob_missing(s: &dyn BlobStore) {
    let key = Sha256::digest(b"never stored");
    assert!(matches!(s.read(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(s.size(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(s.verify(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.read_range(&key, 0, 0),
        Err(StoreError::NotFound(_))
    ));
}
