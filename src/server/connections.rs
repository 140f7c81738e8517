//! The serving loop: accepts connections, hands each to a connection worker (one
//! single-threaded runtime per core) where it lives from its first byte to its last, and on
//! shutdown lets in-flight requests finish for a bounded time.
//!
//! Why not tokio's work-stealing runtime: the requests of a keep-alive connection are tiny, and
//! with every connection able to run on any worker the workers keep waking one another to steal
//! them. Under update-check load that cost more than the requests (perf: about 9% of the
//! server's samples in `try_to_wake_up` and `finish_task_switch`). A connection owned by one
//! thread wakes nobody else; nginx runs its workers the same way. Accepting stays on the caller's
//! runtime, which gives each new socket to the worker with the fewest open connections.

use super::forwarded::{self, TrustedProxies};
use super::per_address::{self, AddressSlot, AddressSlots};
use super::{App, Result, ServerError, ServerOptions, TlsFiles};
use axum::extract::ConnectInfo;
use axum::response::Response;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// The TLS acceptor for the given PEM files.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
    let read = |what, path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| ServerError::ReadPem {
            what,
            path: path.clone(),
            source,
        })
    };
    let cert_pem = read("certificate", &files.cert)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|source| ServerError::ReadPem {
            what: "certificate",
            path: files.cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ServerError::EmptyPem {
            what: "certificate",
            path: files.cert.clone(),
        });
    }
    let key_pem = read("private key", &files.key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| ServerError::ReadPem {
            what: "private key",
            path: files.key.clone(),
            source,
        })?
        .ok_or_else(|| ServerError::EmptyPem {
            what: "private key",
            path: files.key.clone(),
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Closes a connection of an address that holds its share of connections. Without TLS it is
/// told why first: one write into the empty socket buffer, never waited on (the accept loop
/// must not stall on a client).
fn refuse(stream: &tokio::net::TcpStream, address: SocketAddr, tls: bool) {
    tracing::debug!(%address, "too many connections from this address; closing a new one");
    if !tls {
        let _ = stream.try_write(&per_address::refusal());
    }
}

/// A TLS handshake that has not finished by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and gives open
/// connections `options.shutdown_grace` to finish what they are doing.
pub async fn serve(
    listener: TcpListener,
    app: App,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let context = Arc::new(ConnectionContext {
        app,
        http,
        tls: options.tls.as_ref().map(tls_acceptor).transpose()?,
        proxies: options.trusted_proxies.clone(),
    });
    let workers = Workers::start(options.connection_workers, &context)?;
    // Each connection holds a receiver: the sender tells them to finish, and its `closed()`
    // resolves when the last one has.
    let (stop, stopping) = watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    // Never more than half of all slots, so that one address cannot take them all even when the
    // operator has made `max_connections` smaller than the share.
    let per_address = AddressSlots::new(
        options
            .max_connections_per_address
            .min((options.max_connections / 2).max(1)),
    );
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the limit, new connections wait in the kernel's listen queue.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, address) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A trusted proxy's connections carry many clients: only `max_connections` bounds them.
        let address_slot = if context.proxies.contains(address.ip()) {
            None
        } else {
            match per_address.try_acquire(address.ip()) {
                Some(address_slot) => Some(address_slot),
                None => {
                    refuse(&stream, address, context.tls.is_some());
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        // Off this runtime's reactor, onto the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, %address, "cannot hand the connection over");
                continue;
            }
        };
        workers.hand_over(Accepted {
            stream,
            address,
            slot,
            _address_slot: address_slot,
            stopping: stopping.clone(),
        });
    }
    drop(listener);
    drop(stopping);
    tracing::info!(grace = ?options.shutdown_grace, "shutting down; finishing in-flight requests");
    let _ = stop.send(true);
    if tokio::time::timeout(options.shutdown_grace, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time; closing their connections");
    }
    workers.stop().await;
    Ok(())
}

/// What every connection is served with.
struct ConnectionContext {
    app: App,
    http: hyper::server::conn::http1::Builder,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxies: TrustedProxies,
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    address: SocketAddr,
    /// Held while the connection is open (the `max_connections` limit).
    slot: OwnedSemaphorePermit,
    /// Held while the connection is open (the per-address limit), unless from a trusted proxy.
    _address_slot: Option<AddressSlot>,
    stopping: watch::Receiver<bool>,
}

/// The connection workers: threads, each running a single-threaded runtime.
struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    queue: mpsc::UnboundedSender<(Accepted, OpenConnection)>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Counts a connection as open on its worker until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` workers (at least one).
    fn start(count: usize, context: &Arc<ConnectionContext>) -> Result<Self> {
        let io_error = |context: &str| {
            let context = context.to_string();
            move |source| ServerError::Io { context, source }
        };
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_error("cannot start a connection worker's runtime"))?;
            let (queue, mut accepted) = mpsc::unbounded_channel::<(Accepted, OpenConnection)>();
            let context = Arc::clone(context);
            let thread = std::thread::Builder::new()
                .name(format!("depot-http-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some((connection, open)) = accepted.recv().await {
                            tokio::spawn(serve_connection(connection, Arc::clone(&context), open));
                        }
                    });
                })
                .map_err(io_error("cannot start a connection worker"))?;
            workers.push(Worker {
                queue,
                open: Arc::new(AtomicUsize::new(0)),
                thread,
            });
        }
        Ok(Self { workers })
    }

    /// Gives the connection to the worker with the fewest open connections.
    fn hand_over(&self, accepted: Accepted) {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
        else {
            return;
        };
        let open = OpenConnection::new(&worker.open);
        if let Err(mpsc::error::SendError((refused, _))) = worker.queue.send((accepted, open)) {
            // Only a worker whose thread has died refuses; the connection is closed.
            tracing::error!(address = %refused.address, "connection worker is gone");
        }
    }

    /// Closes the queues and waits for the workers' threads. Connections still open (past the
    /// shutdown grace) are dropped with their worker's runtime.
    async fn stop(self) {
        let threads: Vec<_> = self
            .workers
            .into_iter()
            .map(|worker| {
                drop(worker.queue);
                worker.thread
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(std::thread::JoinHandle::join)
                .filter(std::result::Result::is_err)
                .count()
        })
        .await;
        if !matches!(joined, Ok(0)) {
            tracing::error!("a connection worker ended with a panic");
        }
    }
}

/// Serves one connection on the worker's runtime.
async fn serve_connection(
    accepted: Accepted,
    context: Arc<ConnectionContext>,
    _open: OpenConnection,
) {
    let Accepted {
        stream,
        address,
        slot: _slot,
        _address_slot,
        stopping,
    } = accepted;
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, %address, "cannot register the connection");
            return;
        }
    };
    let service = connection_service(context.app.clone(), address, &context.proxies);
    match &context.tls {
        None => {
            let connection = context
                .http
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            run_connection(connection, stopping, address).await;
        }
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %address, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let connection = context
                .http
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            run_connection(connection, stopping, address).await;
        }
    }
}

/// Serves one connection; when shutdown is asked for, the request in flight finishes (a download
/// to its last byte) and the connection then closes instead of waiting for another.
async fn run_connection<I, S>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    mut stopping: watch::Receiver<bool>,
    address: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %address, "connection ended with an error");
    }
}

/// The per-connection service: the router, with the client address every request can read.
/// A connection from a trusted proxy carries requests of many clients, each named by its
/// `X-Forwarded-For`; any other connection's requests are its peer's.
fn connection_service(
    app: App,
    address: SocketAddr,
    proxies: &forwarded::TrustedProxies,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = std::result::Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    let proxy = proxies.contains(address.ip()).then(|| proxies.clone());
    // One reference count per connection: cloning the `App` itself for every request would
    // write the shared counts of its router and states from every core, request after request.
    let app = Arc::new(app);
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        if let Some(proxies) = &proxy {
            let client = proxies.client(address.ip(), request.headers());
            request
                .extensions_mut()
                .insert(forwarded::ForwardedClient(client));
        }
        request.extensions_mut().insert(ConnectInfo(address));
        let app = Arc::clone(&app);
        async move { Ok(app.handle(request).await) }
    })
}
