//! The S3 store against a real S3-compatible server (`scripts/test-garage.sh start`), each test
//! in a scratch bucket of its own. Without `DEPOT_TEST_S3_ENDPOINT` the tests print why and
//! pass, except under `CI=true`, where they fail.

use super::*;
use crate::store::behaviour_tests::blob_store_tests;
use std::io::Write;

/// Deletes its bucket, with every object in it, when the test ends.
pub(crate) struct ScratchBucket {
    store: Option<S3BlobStore>,
    pub config: S3Config,
    _spool: tempfile::TempDir,
}

impl Drop for ScratchBucket {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            if let Err(e) = store.delete_bucket() {
                eprintln!("scratch bucket {} not deleted: {e}", self.config.bucket);
            }
        }
    }
}

/// The settings of a new scratch bucket on the test server, or `None` (with the reason
/// printed) when no server is configured.
pub(crate) fn scratch_config() -> Option<(S3Config, tempfile::TempDir)> {
    let Ok(endpoint) = std::env::var("DEPOT_TEST_S3_ENDPOINT") else {
        let reason =
            "DEPOT_TEST_S3_ENDPOINT is not set; run eval \"$(scripts/test-garage.sh start)\"";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{reason} (required under CI=true)"
        );
        eprintln!("skipped: {reason}");
        return None;
    };
    let spool = tempfile::tempdir().unwrap();
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
    let config = S3Config {
        bucket: BucketName::parse(&format!("depot-test-{}", hex::encode(suffix))).unwrap(),
        endpoint: Some(endpoint),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "garage".into()),
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        session_token: None,
        spool_dir: spool.path().to_path_buf(),
        presign_downloads: None,
    };
    Some((config, spool))
}

/// A store on a new scratch bucket.
pub(crate) fn scratch_with(
    presign_downloads: Option<Duration>,
) -> Option<(ScratchBucket, S3BlobStore)> {
    let (mut config, spool) = scratch_config()?;
    config.presign_downloads = presign_downloads;
    S3BlobStore::create_bucket(&config).unwrap();
    let store = S3BlobStore::open(config.clone()).unwrap();
    let guard = ScratchBucket {
        store: Some(store.clone()),
        config,
        _spool: spool,
    };
    Some((guard, store))
}

blob_store_tests!(match scratch_with(None) {
    Some(scratch) => scratch,
    None => return,
});

fn sample(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn put(store: &S3BlobStore, data: &[u8]) -> BlobKey {
    let mut w = store.create().unwrap();
    for piece in data.chunks(1 << 20) {
        w.write_all(piece).unwrap();
    }
    let (key, len) = w.commit().unwrap();
    assert_eq!(len, data.len() as u64);
    key
}

fn read_all(mut reader: Box<dyn Read + Send>) -> Vec<u8> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    out
}

fn package(part_key: BlobKey, part: &[u8], tail: &[u8]) -> (Composition, Vec<u8>) {
    let whole = [part, tail].concat();
    let composition = Composition {
        key: BlobKey::digest(&whole),
        size: whole.len() as u64,
        part: Segment {
            blob: part_key,
            offset: 0,
            len: part.len() as u64,
        },
        tail: bytes::Bytes::copy_from_slice(tail),
    };
    (composition, whole)
}

#[test]
fn multipart_upload_of_a_large_blob() {
    let Some((_guard, store)) = scratch_with(None) else {
        return;
    };
    // Three parts of the upload: 16 + 16 + 8 MiB and a few bytes.
    let data = sample((40 << 20) + 7, 1);
    let key = put(&store, &data);
    assert_eq!(key, BlobKey::digest(&data));
    assert_eq!(store.size(&key).unwrap(), data.len() as u64);
    assert_eq!(read_all(store.reader(&key).unwrap()), data);
    assert!(store.verify(&key).unwrap());
    // Committing it again finds it stored and uploads nothing.
    assert_eq!(put(&store, &data), key);
    assert_eq!(store.list().unwrap(), vec![key]);
}

#[test]
fn composed_package_is_byte_exact_ranged_and_presigned() {
    let Some((_guard, store)) = scratch_with(Some(Duration::from_secs(120))) else {
        return;
    };
    let part = sample((6 << 20) + 3, 2);
    let part_key = put(&store, &part);
    let tails = [sample(20_000, 3), sample(1, 4), sample(300_000, 5)];
    let (compositions, packages): (Vec<_>, Vec<_>) = tails
        .iter()
        .map(|tail| package(part_key, &part, tail))
        .unzip();
    let segments = store.compose(compositions.clone()).unwrap().unwrap();
    for ((composition, whole), segment) in compositions.iter().zip(&packages).zip(&segments) {
        assert_eq!(
            *segment,
            Segment {
                blob: composition.key,
                offset: 0,
                len: whole.len() as u64
            }
        );
        assert_eq!(store.read(&composition.key).unwrap(), *whole);
        assert!(store.verify(&composition.key).unwrap());
    }
    // Content-addressed: composing again keeps what is stored.
    assert_eq!(
        store.compose(compositions.clone()).unwrap().unwrap(),
        segments
    );

    let (key, whole) = (compositions[0].key, &packages[0]);
    let boundary = part.len() as u64;
    assert_eq!(
        store.read_range(&key, boundary - 10, 30).unwrap(),
        &whole[part.len() - 10..part.len() + 20]
    );
    let streamed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use futures_util::TryStreamExt;
        let stream = store.stream_range(&key, 5, boundary).unwrap();
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        chunks.concat()
    });
    assert_eq!(streamed, &whole[5..part.len() + 5]);

    let url = store
        .download_url(&key, "physics-1.0.0-linux-x86_64.zip")
        .unwrap()
        .unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let curl = std::process::Command::new("curl")
        .args(["-sSf", "-D", "-", "-o"])
        .arg(out.path())
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let headers = String::from_utf8_lossy(&curl.stdout).to_lowercase();
    assert!(
        headers.contains(
            "content-disposition: attachment; filename=\"physics-1.0.0-linux-x86_64.zip\""
        ),
        "{headers}"
    );
    assert_eq!(std::fs::read(out.path()).unwrap(), *whole);
    let ranged = std::process::Command::new("curl")
        .args(["-sSf", "-r", "100-199"])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(ranged.stdout, &whole[100..200]);
}

#[test]
fn small_payload_part_is_composed_by_one_put() {
    let Some((_guard, store)) = scratch_with(None) else {
        return;
    };
    let part = sample(1 << 20, 6);
    let part_key = put(&store, &part);
    let (composition, whole) = package(part_key, &part, &sample(5_000, 7));
    let segments = store.compose(vec![composition.clone()]).unwrap().unwrap();
    assert_eq!(segments[0].blob, composition.key);
    assert_eq!(store.read(&composition.key).unwrap(), whole);
    assert!(store
        .download_url(&composition.key, "x.zip")
        .unwrap()
        .is_none());
}

#[test]
fn composition_of_a_missing_part_or_wrong_size_fails_and_stores_nothing() {
    let Some((_guard, store)) = scratch_with(None) else {
        return;
    };
    let part = sample(6 << 20, 8);
    let (composition, _) = package(BlobKey::digest(&part), &part, b"tail");
    assert!(matches!(
        store.compose(vec![composition.clone()]),
        Err(StoreError::NotFound(_))
    ));
    let part_key = put(&store, &part);
    let mut wrong = package(part_key, &part, b"tail").0;
    wrong.size += 1;
    assert!(store.compose(vec![wrong]).is_err());
    assert_eq!(store.list().unwrap(), vec![part_key]);
}

#[test]
fn bucket_names_and_missing_buckets() {
    for bad in [
        "ab",
        "Depot",
        "depot_artifacts",
        "-depot",
        "depot-",
        "a..b",
        &"a".repeat(64),
    ] {
        assert!(BucketName::parse(bad).is_err(), "{bad}");
    }
    assert!(BucketName::parse("depot-artifacts.1").is_ok());
    let Some((config, _spool)) = scratch_config() else {
        return;
    };
    let error = S3BlobStore::open(config).unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
}
