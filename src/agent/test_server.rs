//! A tiny HTTP/1.1 server for the agent's tests: one thread, one request per connection, routes
//! set by the test, `Range`/`If-Range` honoured for files, and switches that misbehave the way a
//! hostile proxy or a broken network does (flip a byte, cut the body short).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub enum Route {
    /// A file served with ETag, Accept-Ranges and Range support.
    File { bytes: Vec<u8>, etag: String },
    /// A fixed answer.
    Fixed {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct Behaviour {
    /// Flip one byte of every file body served (at this offset of the file).
    pub flip_byte_at: Option<usize>,
    /// Close the connection after this many body bytes of the next file response.
    pub cut_next_file_after: Option<usize>,
}

#[derive(Clone)]
pub struct TestServer {
    pub url: String,
    routes: Arc<Mutex<HashMap<(String, String), Route>>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
}

impl TestServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = TestServer {
            url,
            routes: Arc::default(),
            requests: Arc::default(),
            behaviour: Arc::default(),
        };
        let shared = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = shared.handle(stream);
            }
        });
        server
    }

    pub fn route(&self, method: &str, path: &str, route: Route) {
        self.routes
            .lock()
            .unwrap()
            .insert((method.to_string(), path.to_string()), route);
    }

    pub fn json(&self, method: &str, path: &str, status: u16, body: &serde_json::Value) {
        self.route(
            method,
            path,
            Route::Fixed {
                status,
                content_type: "application/json",
                body: body.to_string().into_bytes(),
            },
        );
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        self.requests.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body,
        });
        let route = self.routes.lock().unwrap().get(&(method, path)).cloned();
        match route {
            None => respond(
                &mut stream,
                404,
                "application/json",
                &[],
                br#"{"error":{"code":"not_found","message":"no such route"}}"#,
            ),
            Some(Route::Fixed {
                status,
                content_type,
                body,
            }) => respond(&mut stream, status, content_type, &[], &body),
            Some(Route::File { bytes, etag }) => {
                self.serve_file(&mut stream, &headers, bytes, &etag)
            }
        }
    }

    fn serve_file(
        &self,
        stream: &mut TcpStream,
        headers: &HashMap<String, String>,
        mut bytes: Vec<u8>,
        etag: &str,
    ) -> std::io::Result<()> {
        let (flip, cut) = {
            let mut b = self.behaviour.lock().unwrap();
            (b.flip_byte_at, b.cut_next_file_after.take())
        };
        if let Some(at) = flip {
            bytes[at] ^= 0x55;
        }
        let total = bytes.len();
        let range_ok = headers.get("if-range").is_none_or(|v| v == etag);
        let start = headers
            .get("range")
            .filter(|_| range_ok)
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<usize>().ok());
        let etag_header = ("ETag", etag.to_string());
        match start {
            Some(start) if start >= total => respond(
                stream,
                416,
                "text/plain",
                &[("Content-Range", format!("bytes */{total}"))],
                b"",
            ),
            Some(start) => {
                let extra = [
                    etag_header,
                    (
                        "Content-Range",
                        format!("bytes {start}-{}/{total}", total - 1),
                    ),
                ];
                respond_cut(stream, 206, &extra, &bytes[start..], cut)
            }
            None => respond_cut(stream, 200, &[etag_header], &bytes, cut),
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// A file answer; with `cut`, the headers promise the whole body but the connection closes early.
fn respond_cut(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut extra = extra.to_vec();
    extra.push(("Accept-Ranges", "bytes".to_string()));
    match cut {
        None => respond(stream, status, "application/zip", &extra, body),
        Some(n) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in &extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body[..n.min(body.len())])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
    }
}
