//! Object bodies handed out of the store's runtime: a task on that runtime pulls the HTTP body
//! and pushes its chunks into a bounded channel, which a synchronous reader or an async stream
//! on any other thread or runtime drains. The bound is the backpressure: a slow client stops
//! the pulling, so a download holds a few chunks in memory, never the blob.

use super::Shared;
use crate::store::BlobStream;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks (hyper's frames, 8-16 KiB each) pulled ahead of the consumer.
const CHUNKS_AHEAD: usize = 64;

/// Pulls `body`, which must hold exactly `expected` bytes, into a channel. A body that breaks
/// off or runs long ends the channel with an error, so no consumer takes a short read for a
/// whole one.
pub fn pump(
    handle: &tokio::runtime::Handle,
    mut body: ByteStream,
    expected: u64,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    handle.spawn(async move {
        let mut received = 0u64;
        loop {
            let item = match body.next().await {
                Some(Ok(chunk)) => {
                    received += chunk.len() as u64;
                    if received > expected {
                        Err(io::Error::other(format!(
                            "the object body holds more than the {expected} bytes asked for"
                        )))
                    } else {
                        Ok(chunk)
                    }
                }
                Some(Err(e)) => Err(io::Error::other(e)),
                None if received == expected => return,
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the object body ended after {received} of {expected} bytes"),
                )),
            };
            let failed = item.is_err();
            // A closed channel means the consumer went away (a client hung up): stop pulling,
            // which drops the connection.
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// A blocking `Read` over a pumped body. Must not be read from inside an async task (it
/// blocks the thread while the next chunk arrives).
pub struct ChannelReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// Keeps the runtime the body arrives on.
    _shared: Arc<Shared>,
}

impl ChannelReader {
    pub(super) fn new(chunks: mpsc::Receiver<io::Result<Bytes>>, shared: Arc<Shared>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            _shared: shared,
        }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A pumped body as an async stream, pollable from any runtime.
pub(super) fn into_stream(
    mut chunks: mpsc::Receiver<io::Result<Bytes>>,
    shared: Arc<Shared>,
) -> BlobStream {
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        // Moved in so that the store's runtime outlives the stream.
        let _keep = &shared;
        chunks.poll_recv(cx)
    }))
}
