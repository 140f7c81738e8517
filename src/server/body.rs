//! The body of a download: a byte range of the concatenation of a package's segments, streamed
//! straight from memory maps of the immutable blob files.
//!
//! A package is never held in memory and its payload never copied into a new file: each chunk is
//! a `Bytes` slice of a kept memory map, so hyper hands the kernel pointers into the page cache.
//! Maps stay open in [`BlobMaps`] because blobs never change once published (temp file, fsync,
//! rename; the store never reopens a published blob for writing), and a kept map keeps its page
//! tables, so repeated downloads of a popular package fault no pages in. A store that cannot give
//! a local file (object storage) streams each stretch instead: one ranged request per stretch,
//! whose body flows through as the client takes it (a composed S3 package is one stretch, so a
//! download, or a resumed one, is one ranged GET of the object).
//! This module must never write a blob, and must never map a file that is not a published blob.

use super::error::{ApiError, ApiResult};
use crate::store::BlobStream;
use crate::store::{BlobKey, BlobStore, Segment, StoreError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Frames handed to hyper: large enough that a 256 MiB download is a few dozen polls, small
/// enough that one slow client does not pin a large stretch of a map in its socket queue.
pub const CHUNK: usize = 4 << 20;

/// How many blob maps stay open. A map costs address space, not memory: its pages are the page
/// cache's, which the kernel reclaims as it needs.
pub const DEFAULT_MAPPED_BLOBS: usize = 512;

/// Kept memory maps of blob files, each as one `Bytes` that chunks are sliced from.
pub struct BlobMaps {
    capacity: usize,
    cache: Mutex<MapCache>,
}

#[derive(Default)]
struct MapCache {
    maps: HashMap<BlobKey, Bytes>,
    /// Insertion order, for eviction; a popular blob evicted is simply mapped again.
    order: VecDeque<BlobKey>,
}

impl BlobMaps {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            cache: Mutex::new(MapCache::default()),
        }
    }

    /// The whole blob as a memory map, or `None` when the store has no local file for it.
    /// Blocking: call it on the blocking pool.
    pub fn get(&self, blobs: &dyn BlobStore, key: &BlobKey) -> ApiResult<Option<Bytes>> {
        if let Some(map) = self.lock().maps.get(key) {
            return Ok(Some(map.clone()));
        }
        let Some(file) = blobs.open_file(key)? else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|e| {
                ApiError::internal(StoreError::Io {
                    context: format!("stat blob {key}"),
                    source: e,
                })
            })?
            .len();
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        // SAFETY: a published blob is immutable: the blob store writes a temp file and renames it
        // into place, and never opens a published blob for writing again. A new blob with the same
        // key would replace the directory entry, not these pages. Only an outside process
        // truncating files in the data directory could invalidate the map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
            ApiError::internal(StoreError::Io {
                context: format!("memory-map blob {key}"),
                source: e,
            })
        })?;
        let map = Bytes::from_owner(map);
        let mut cache = self.lock();
        if !cache.maps.contains_key(key) {
            if cache.order.len() >= self.capacity {
                if let Some(old) = cache.order.pop_front() {
                    cache.maps.remove(&old);
                }
            }
            cache.order.push_back(*key);
            cache.maps.insert(*key, map.clone());
        }
        Ok(Some(map))
    }

    /// Maps stay correct even if a thread panicked while holding the lock: the cache only holds
    /// immutable maps, so its state is never half-updated in a harmful way.
    fn lock(&self) -> std::sync::MutexGuard<'_, MapCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The stretches of blobs that hold bytes `range` of the concatenation of `segments`.
pub fn select(segments: &[Segment], range: Range<u64>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start_of_segment = 0u64;
    for segment in segments {
        let end_of_segment = start_of_segment.saturating_add(segment.len);
        let from = range.start.max(start_of_segment);
        let to = range.end.min(end_of_segment);
        if from < to {
            out.push(Segment {
                blob: segment.blob,
                offset: segment.offset + (from - start_of_segment),
                len: to - from,
            });
        }
        start_of_segment = end_of_segment;
        if start_of_segment >= range.end {
            break;
        }
    }
    out
}

/// A download body of a known length.
pub struct DownloadBody {
    source: Source,
    remaining: u64,
    served: Arc<AtomicU64>,
}

enum Source {
    /// Slices of kept maps, or small texts.
    Memory(VecDeque<Bytes>),
    /// Stretches streamed by the store, in order, each opened when the response was prepared
    /// (so a missing blob is an error status, not a broken body).
    Streams(VecDeque<BlobStream>),
}

impl DownloadBody {
    /// Bytes `range` of the package made of `segments`. Blocking (it may map files): call it on
    /// the blocking pool. `served` counts the bytes handed to the connection.
    pub fn open(
        blobs: &Arc<dyn BlobStore>,
        maps: &BlobMaps,
        segments: &[Segment],
        range: Range<u64>,
        served: Arc<AtomicU64>,
    ) -> ApiResult<Self> {
        let stretches = select(segments, range.clone());
        let mut pieces = VecDeque::with_capacity(stretches.len());
        for stretch in &stretches {
            match maps.get(blobs.as_ref(), &stretch.blob)? {
                Some(map) => {
                    let end = stretch.offset.checked_add(stretch.len);
                    match end {
                        Some(end) if end <= map.len() as u64 => {
                            pieces.push_back(map.slice(stretch.offset as usize..end as usize));
                        }
                        _ => {
                            return Err(ApiError::internal(StoreError::Corrupt(format!(
                                "segment {}+{} lies outside blob {} of {} bytes",
                                stretch.offset,
                                stretch.len,
                                stretch.blob,
                                map.len()
                            ))))
                        }
                    }
                }
                None => {
                    // Without a local file for one blob, stream every stretch from the store.
                    let streams = stretches
                        .iter()
                        .map(|s| blobs.stream_range(&s.blob, s.offset, s.len))
                        .collect::<crate::store::Result<VecDeque<_>>>()?;
                    return Ok(Self {
                        source: Source::Streams(streams),
                        remaining: range.end - range.start,
                        served,
                    });
                }
            }
        }
        Ok(Self {
            source: Source::Memory(pieces),
            remaining: range.end - range.start,
            served,
        })
    }

    /// A small in-memory text (checksums, signatures).
    pub fn text(bytes: Bytes, served: Arc<AtomicU64>) -> Self {
        Self {
            remaining: bytes.len() as u64,
            source: Source::Memory(VecDeque::from([bytes])),
            served,
        }
    }

    fn emit(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        self.served.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Body for DownloadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.source {
            Source::Memory(pieces) => loop {
                let Some(mut piece) = pieces.pop_front() else {
                    return Poll::Ready(None);
                };
                if piece.is_empty() {
                    continue;
                }
                if piece.len() > CHUNK {
                    let chunk = piece.split_to(CHUNK);
                    pieces.push_front(piece);
                    return this.emit(chunk);
                }
                return this.emit(piece);
            },
            Source::Streams(streams) => loop {
                let Some(stream) = streams.front_mut() else {
                    return Poll::Ready(None);
                };
                match stream.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        streams.pop_front();
                    }
                    Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => {}
                    Poll::Ready(Some(Ok(chunk))) => return this.emit(chunk),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sha256;

    fn seg(n: u8, offset: u64, len: u64) -> Segment {
        Segment {
            blob: Sha256::from_bytes([n; 32]),
            offset,
            len,
        }
    }

    #[test]
    fn select_cuts_at_segment_boundaries() {
        let segments = [seg(1, 100, 10), seg(2, 0, 5), seg(3, 7, 20)];
        assert_eq!(
            select(&segments, 0..35),
            segments.to_vec(),
            "the whole package"
        );
        assert_eq!(select(&segments, 3..6), vec![seg(1, 103, 3)]);
        assert_eq!(
            select(&segments, 8..12),
            vec![seg(1, 108, 2), seg(2, 0, 2)],
            "across a boundary"
        );
        assert_eq!(
            select(&segments, 9..16),
            vec![seg(1, 109, 1), seg(2, 0, 5), seg(3, 7, 1)]
        );
        assert_eq!(select(&segments, 34..35), vec![seg(3, 26, 1)]);
        assert!(select(&segments, 35..35).is_empty());
    }

    #[tokio::test]
    async fn memory_body_chunks_and_counts() {
        use http_body_util::BodyExt;
        let data = Bytes::from(vec![7u8; CHUNK * 2 + 3]);
        let served = Arc::new(AtomicU64::new(0));
        let mut body = DownloadBody {
            remaining: data.len() as u64 + 2,
            source: Source::Memory(VecDeque::from([data.clone(), Bytes::from_static(b"xy")])),
            served: Arc::clone(&served),
        };
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, vec![CHUNK, CHUNK, 3, 2]);
        assert_eq!(served.load(Ordering::Relaxed), data.len() as u64 + 2);
    }
}
