//! The two digests of an artifact, SHA-256 (checksums, ETag, `Repr-Digest`) and BLAKE2b-512
//! (minisign's prehash), computed in one pass over the bytes.

use std::io::{ErrorKind, Read};
use std::sync::{mpsc, Arc};

use blake2::Blake2b512;
use sha2::Digest;

use super::{Result, SigningError};
use crate::domain::Sha256;

/// SHA-256 and BLAKE2b-512 of one stream, fed once.
///
/// `Clone` is the point: the payload part shared by the packages of a release and platform is
/// hashed once, and each package continues from a copy of that state with its own tail.
#[derive(Clone, Default)]
pub struct StreamDigest {
    sha256: sha2::Sha256,
    blake2b: Blake2b512,
}

impl StreamDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake2b.update(bytes);
    }

    /// The SHA-256 of everything fed, and the BLAKE2b-512 prehash that
    /// [`SigningKey::sign_prehashed`](super::SigningKey::sign_prehashed) signs.
    pub fn finish(self) -> (Sha256, [u8; 64]) {
        (
            Sha256::from_bytes(self.sha256.finalize().into()),
            self.blake2b.finalize().into(),
        )
    }
}

impl std::fmt::Debug for StreamDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDigest").finish_non_exhaustive()
    }
}

/// Bytes handed to a hashing thread at a time: large enough that channel traffic is noise,
/// small enough that the buffers in flight stay a few MiB.
const CHUNK_LEN: usize = 1 << 20;
/// Chunk buffers in flight; they are recycled, so a 1 GB payload allocates only these.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Hashes everything `reader` yields into a [`StreamDigest`].
///
/// This pass over each payload is the floor of publishing, so with two or more cores SHA-256
/// and BLAKE2b run on two threads over the same chunks while this thread reads the next ones.
/// A stream that ends in a read error gives that error and no digest.
pub fn digest_reader(reader: &mut dyn Read) -> Result<StreamDigest> {
    let mut first = vec![0; CHUNK_LEN];
    let len = fill(reader, &mut first)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if len == CHUNK_LEN && cores > 1 {
        return digest_in_parallel(reader, first);
    }
    // Small input (threads would cost more than they save) or a single core.
    let mut digest = StreamDigest::new();
    let mut len = len;
    loop {
        digest.update(&first[..len]);
        if len < CHUNK_LEN {
            return Ok(digest);
        }
        len = fill(reader, &mut first)?;
    }
}

/// `first` is a full chunk already read from `reader`.
fn digest_in_parallel(reader: &mut dyn Read, first: Vec<u8>) -> Result<StreamDigest> {
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let (sha_tx, sha_rx) = mpsc::channel::<Arc<Vec<u8>>>();
    let (blake_tx, blake_rx) = mpsc::channel::<Arc<Vec<u8>>>();
    std::thread::scope(|scope| {
        let sha = scope.spawn({
            let free_tx = free_tx.clone();
            move || hash_chunks(sha2::Sha256::new(), sha_rx, free_tx)
        });
        let blake = scope.spawn(move || hash_chunks(Blake2b512::new(), blake_rx, free_tx));
        let fed = feed(reader, first, &free_rx, [sha_tx, blake_tx]);
        // The senders were moved into `feed` and are dropped by now, so both threads finish.
        let sha256 = sha
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let blake2b = blake
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        fed.map(|()| StreamDigest { sha256, blake2b })
    })
}

/// Reads `reader` to its end in chunks, handing each chunk to every hashing thread.
fn feed(
    reader: &mut dyn Read,
    first: Vec<u8>,
    free: &mpsc::Receiver<Vec<u8>>,
    hashers: [mpsc::Sender<Arc<Vec<u8>>>; 2],
) -> Result<()> {
    let mut allocated = 1;
    let mut buf = first;
    let mut len = CHUNK_LEN;
    loop {
        buf.truncate(len);
        let chunk = Arc::new(buf);
        for hasher in &hashers {
            if hasher.send(Arc::clone(&chunk)).is_err() {
                // The hashing thread is gone, which only a panic does; joining it re-raises that.
                return Ok(());
            }
        }
        // When both hashers are done with the chunk already, this is its last holder and must
        // reuse it: dropped here, it would never come back, and after CHUNKS_IN_FLIGHT such
        // losses the loop below would wait for a free buffer forever.
        let mine = Arc::into_inner(chunk);
        if len < CHUNK_LEN {
            return Ok(());
        }
        buf = match mine.map_or_else(|| free.try_recv(), Ok) {
            Ok(buf) => buf,
            Err(_) if allocated < CHUNKS_IN_FLIGHT => {
                allocated += 1;
                Vec::new()
            }
            Err(_) => match free.recv() {
                Ok(buf) => buf,
                Err(_) => return Ok(()),
            },
        };
        // Recycled buffers held a full chunk, so this only allocates for new ones.
        buf.resize(CHUNK_LEN, 0);
        len = fill(reader, &mut buf)?;
        if len == 0 {
            return Ok(());
        }
    }
}

/// Feeds every chunk received into `state`; the last thread done with a chunk returns its
/// buffer for reuse.
fn hash_chunks<D: Digest>(
    mut state: D,
    chunks: mpsc::Receiver<Arc<Vec<u8>>>,
    free: mpsc::Sender<Vec<u8>>,
) -> D {
    for chunk in chunks {
        state.update(chunk.as_slice());
        if let Some(buf) = Arc::into_inner(chunk) {
            // The reader may have finished and dropped its end; the buffer is then just freed.
            let _ = free.send(buf);
        }
    }
    state
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(SigningError::Read(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes that are not a repeating pattern at any chunk-sized period.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn one_shot(data: &[u8]) -> (Sha256, [u8; 64]) {
        (Sha256::digest(data), Blake2b512::digest(data).into())
    }

    #[test]
    fn known_answers() {
        let (sha, blake) = StreamDigest::new().finish();
        assert_eq!(
            sha.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // BLAKE2b-512("") from RFC 7693's reference implementation.
        assert_eq!(
            hex::encode(blake),
            "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419\
             d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"
        );
        let mut d = StreamDigest::new();
        d.update(b"abc");
        let (sha, blake) = d.finish();
        assert_eq!(
            sha.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(blake),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
    }

    #[test]
    fn cloned_prefix_state_equals_whole_concatenation() {
        let prefix = sample(3 * CHUNK_LEN + 12_345);
        let prefix_state = digest_reader(&mut prefix.as_slice()).unwrap();
        for tail in [&b""[..], b"tail one", &sample(70_000)] {
            let mut d = prefix_state.clone();
            d.update(tail);
            let whole = [prefix.as_slice(), tail].concat();
            assert_eq!(d.finish(), one_shot(&whole));
        }
    }

    #[test]
    fn reader_digest_matches_one_shot_at_chunk_boundaries() {
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            2 * CHUNK_LEN,
            (CHUNKS_IN_FLIGHT + 3) * CHUNK_LEN + 7,
        ] {
            let data = sample(len);
            let got = digest_reader(&mut data.as_slice()).unwrap().finish();
            assert_eq!(got, one_shot(&data), "length {len}");
        }
    }

    /// Yields at most 1000 bytes per read and is sometimes interrupted, as pipes and sockets are.
    struct Trickle<'a> {
        data: &'a [u8],
        calls: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(5) {
                return Err(std::io::Error::new(ErrorKind::Interrupted, "signal"));
            }
            let n = buf.len().min(self.data.len()).min(1000);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_and_interrupted_reads_are_retried() {
        let data = sample(2 * CHUNK_LEN + 999);
        let mut reader = Trickle {
            data: &data,
            calls: 0,
        };
        let got = digest_reader(&mut reader).unwrap().finish();
        assert_eq!(got, one_shot(&data));
    }

    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_gives_no_digest() {
        for after in [0, 10, 5 * CHUNK_LEN + 3] {
            let err = digest_reader(&mut FailsAfter(after)).unwrap_err();
            assert!(err.to_string().contains("disk on fire"), "{err}");
        }
    }
}
