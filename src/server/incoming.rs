//! Request bodies: each route's size limit, enforced from `Content-Length` before a byte of the
//! body is read, and a deadline for the whole body, so that a client declaring a huge body or
//! trickling a small one cannot hold a connection (one of `max_connections`) for long.
//!
//! [`guard`] wraps the body of every routed request. The route's [`BodyLimit`] layer (the
//! server-wide one, or a route's own, which runs later and so wins) records its limit where the
//! wrapped body reads it at its first poll: a declared length past it fails that poll, before
//! anything is read. A body not complete by its deadline fails its next poll. Either way the
//! guard then answers 413 or 408 itself when the handler answered with the failed read (axum
//! words it as a 400, the portal as a 422); a handler that answered on other grounds keeps its answer. The
//! update check's own path ([`super::hot_path`]) reads its body with [`read_limited`], under the
//! same rules. A timer is armed only when a body is not all there when first asked for, so the
//! usual small request, whose body arrives with its headers, costs none.

use super::error::{ApiError, ApiResult};
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The slowest body accepted, beyond the body timeout: 128 KiB/s (about 1 Mbit/s). A body may
/// take `body_timeout` plus its length at this rate: a 2 MiB JSON body 16 s more, a 4 GiB
/// release upload about 9 hours.
pub const MIN_BODY_RATE: u64 = 128 * 1024;

/// The time a body of `length` bytes may take to arrive, counted from the request's headers.
pub fn body_deadline(body_timeout: Duration, length: u64) -> Duration {
    body_timeout + Duration::from_secs(length / MIN_BODY_RATE)
}

/// The `Content-Length` the request declares, if it declares a readable one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is larger than this endpoint takes ({limit} bytes at most)"
    ))
}

fn too_slow() -> ApiError {
    ApiError::Timeout
}

/// A refused answer closes the connection: the rest of the body is never read.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What became of a guarded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Verdict {
    Fine = 0,
    TooLarge = 1,
    TooSlow = 2,
}

/// Shared by a request's guarded body, its [`BodyLimit`] layers and the [`guard`].
struct Rules {
    limit: AtomicU64,
    verdict: AtomicU8,
}

impl Rules {
    fn verdict(&self) -> Verdict {
        match self.verdict.load(Ordering::Acquire) {
            1 => Verdict::TooLarge,
            2 => Verdict::TooSlow,
            _ => Verdict::Fine,
        }
    }

    fn refuse(&self, verdict: Verdict) {
        self.verdict.store(verdict as u8, Ordering::Release);
    }
}

/// The extension through which a route's [`BodyLimit`] reaches its request's guarded body.
#[derive(Clone)]
struct RequestRules(Arc<Rules>);

/// Middleware around every route: guards the request's body, and answers 413 (declared too
/// large) or 408 (too slow) when the body was refused.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let rules = Arc::new(Rules {
        limit: AtomicU64::new(state.options.max_body_bytes as u64),
        verdict: AtomicU8::new(Verdict::Fine as u8),
    });
    let (mut parts, body) = request.into_parts();
    let declared = declared_length(&parts.headers);
    parts.extensions.insert(RequestRules(Arc::clone(&rules)));
    let body = GuardedBody {
        inner: body,
        rules: Arc::clone(&rules),
        declared,
        started: Instant::now(),
        body_timeout: state.options.body_timeout,
        reading: Progress::NotStarted,
    };
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    // A handler that answered on other grounds despite the failed read (another org's
    // resource is 404 whatever its body) keeps its answer; one that reported the failed read
    // (400, or anything a body error may have become) has it said precisely.
    let reported_the_read = matches!(response.status().as_u16(), 400 | 413 | 422 | 500..);
    match rules.verdict() {
        Verdict::TooLarge if reported_the_read => {
            closing(too_large(rules.limit.load(Ordering::Relaxed)))
        }
        Verdict::TooSlow if reported_the_read => closing(too_slow()),
        Verdict::Fine | Verdict::TooLarge | Verdict::TooSlow => response,
    }
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the request body is larger than this endpoint takes")]
    TooLarge,
    #[error("the request body did not arrive in time")]
    TooSlow,
}

enum Progress {
    NotStarted,
    Arriving {
        deadline: Instant,
        /// Armed the first time the body is not all there.
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// Refused or read to the end: nothing more comes.
    Over,
}

struct GuardedBody {
    inner: Body,
    rules: Arc<Rules>,
    declared: Option<u64>,
    started: Instant,
    body_timeout: Duration,
    reading: Progress,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Progress::NotStarted = this.reading {
            // The route's limit is known by now: its layers have run.
            let limit = this.rules.limit.load(Ordering::Relaxed);
            if this.declared.is_some_and(|length| length > limit) {
                this.rules.refuse(Verdict::TooLarge);
                this.reading = Progress::Over;
                return Poll::Ready(Some(Err(Refused::TooLarge.into())));
            }
            let length = this.declared.unwrap_or(limit).min(limit);
            this.reading = Progress::Arriving {
                deadline: this.started + body_deadline(this.body_timeout, length),
                timer: None,
            };
        }
        let Progress::Arriving { deadline, timer } = &mut this.reading else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.reading = Progress::Over;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if this.inner.is_end_stream() {
                    this.reading = Progress::Over;
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        this.rules.refuse(Verdict::TooSlow);
                        this.reading = Progress::Over;
                        Poll::Ready(Some(Err(Refused::TooSlow.into())))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Progress::Over) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A route's body limit: axum's [`DefaultBodyLimit`] for the extractors that read while
/// counting (a chunked body declares no length), and the limit the [`guard`]ed body checks a
/// declared length against before reading.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(u64);

impl BodyLimit {
    pub fn max(bytes: u64) -> Self {
        BodyLimit(bytes)
    }
}

impl<S> tower::Layer<S> for BodyLimit {
    type Service = BodyLimitService<<DefaultBodyLimit as tower::Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        let axum_limit = DefaultBodyLimit::max(usize::try_from(self.0).unwrap_or(usize::MAX));
        BodyLimitService {
            limit: self.0,
            inner: tower::Layer::layer(&axum_limit, inner),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BodyLimitService<S> {
    limit: u64,
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for BodyLimitService<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if let Some(RequestRules(rules)) = request.extensions().get::<RequestRules>() {
            rules.limit.store(self.limit, Ordering::Relaxed);
        }
        self.inner.call(request)
    }
}

/// The whole body of a request with these headers: 413 at once when it declares more than
/// `limit` bytes, or when it passes them while being read; 408 when it has not all arrived
/// within [`body_deadline`] of now.
pub async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    body_timeout: Duration,
) -> ApiResult<Bytes>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let declared = declared_length(headers);
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit as u64));
    }
    let started = Instant::now();
    let collect = Limited::new(body, limit).collect();
    tokio::pin!(collect);
    // A body that came with its headers is read without arming a timer.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(collected) => collected,
        Poll::Pending => {
            let length = declared.unwrap_or(limit as u64).min(limit as u64);
            let deadline = started + body_deadline(body_timeout, length);
            match tokio::time::timeout_at(deadline, collect).await {
                Ok(collected) => collected,
                Err(_) => return Err(too_slow()),
            }
        }
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(
            "Failed to buffer the request body: length limit exceeded".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "Failed to buffer the request body: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(length: Option<u64>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, length.into());
        }
        headers
    }

    /// A body that never sends anything: reading it must not be what refuses it.
    struct Silent;

    impl http_body::Body for Silent {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn declared_lengths_past_the_limit_are_refused_unread_and_silence_times_out() {
        // The silent body would hang a refusal that waited for it.
        let refused = read_limited(&headers(Some(65)), Silent, 64, Duration::from_secs(3600)).await;
        assert!(matches!(refused, Err(ApiError::TooLarge(_))), "{refused:?}");
        let slow = read_limited(&headers(Some(10)), Silent, 64, Duration::from_millis(50)).await;
        assert!(matches!(slow, Err(ApiError::Timeout)), "{slow:?}");
        let ok = read_limited(
            &headers(Some(2)),
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            64,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(&ok[..], b"{}");
        // Undeclared lengths are counted while reading.
        let big = read_limited(
            &headers(None),
            http_body_util::Full::new(Bytes::from(vec![b'x'; 65])),
            64,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(big, Err(ApiError::TooLarge(_))), "{big:?}");
        let broken = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"{"))),
            Err(std::io::Error::other("connection reset")),
        ]));
        let broken = read_limited(&headers(None), broken, 64, Duration::from_secs(5)).await;
        assert!(matches!(broken, Err(ApiError::BadRequest(_))), "{broken:?}");
    }

    #[test]
    fn slow_links_get_time_in_proportion() {
        let base = Duration::from_secs(30);
        assert_eq!(body_deadline(base, 0), base);
        assert_eq!(body_deadline(base, 2 << 20), base + Duration::from_secs(16));
        assert!(declared_length(&headers(None)).is_none());
    }
}
