//! A real `depot serve` over a fresh demo depot, for the portal's page and browser tests.
#![allow(dead_code)]

use depot::server::{router, serve, AppState, ServerOptions};
use depot::service::Depot;
use std::sync::Arc;

pub struct Portal {
    pub url: String,
    pub admin_token: String,
    pub partner_token: String,
    pub depot: Arc<Depot>,
    pub runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn start() -> Portal {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let report = depot::demo::prepare(dir.path(), &url, 1, &depot::service::NoProgress).unwrap();
    let depot = Arc::new(Depot::open(&report.settings).unwrap());
    let options = ServerOptions::default();
    let state = AppState::with_depot(Arc::clone(&depot), options.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        serve(listener, router(state), &options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Portal {
        url,
        admin_token: report.admin_token.secret.clone(),
        partner_token: report.partner_token.secret.clone(),
        depot,
        runtime,
        _dir: dir,
        stop: Some(stop),
    }
}

/// The text between `start` and the next `end` after it, in `html`.
pub fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find(end)? + from;
    Some(&html[from..to])
}

/// The value of the first `name="csrf"` hidden input.
pub fn csrf(html: &str) -> String {
    between(html, "name=\"csrf\" value=\"", "\"")
        .expect("a csrf field")
        .to_string()
}

/// The sha256 shown for `file` on an org page.
pub fn shown_sha256(html: &str, file: &str) -> Option<String> {
    between(html, &format!("data-file=\"{file}\">"), "<").map(str::to_string)
}

/// `html` with the entities the templates' escaping writes turned back into text.
pub fn decode(html: &str) -> String {
    html.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
