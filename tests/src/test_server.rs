//! A small HTTP/1.1 server on 127.0.0.1 for tests and the loopback benchmark: serves byte bodies
//! and redirects at fixed paths, honours `Range: bytes=N-` (206), and injects faults on request —
//! error statuses, connections dropped mid-body, corrupted bodies, ignored Range, stalls. It counts
//! what it saw per path (GETs, HEADs, Range offsets, body bytes sent) so tests can prove retries and
//! resumption happened. Each response closes its connection. The server stops when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A fault applied to one GET of a path (queued) or to all of them (sticky).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a short body.
    Status(u16),
    /// Send the headers (full Content-Length) and this many body bytes, then close.
    DropAfter(usize),
    /// Send the whole body with some bytes flipped.
    Corrupt,
    /// Answer Range requests with 200 and the whole body.
    IgnoreRange,
    /// Send the headers and this many body bytes, then go silent for the duration, then close.
    StallAfter(usize, Duration),
}

#[derive(Clone, Debug)]
enum Content {
    Body(Arc<Vec<u8>>),
    Redirect(String),
}

#[derive(Clone, Debug)]
struct Route {
    content: Content,
    headers: Vec<(String, String)>,
    queued: VecDeque<Fault>,
    sticky: Vec<Fault>,
}

/// What the server saw for one path.
#[derive(Clone, Debug, Default)]
pub struct Hits {
    pub gets: u64,
    pub heads: u64,
    /// Start offsets of the `Range: bytes=N-` headers received, in order.
    pub ranges: Vec<u64>,
    pub body_bytes_sent: u64,
    /// Faults applied, in order (debug names).
    pub faults: Vec<String>,
}

#[derive(Default)]
struct State {
    routes: BTreeMap<String, Route>,
    hits: BTreeMap<String, Hits>,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Bind an ephemeral port on 127.0.0.1 and start serving.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &state);
                    });
                }
            })
        };
        Ok(Self {
            addr,
            state,
            stop,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `body` at `path` (e.g. `/baseline/x.xml.gz`).
    pub fn add(&self, path: &str, body: Vec<u8>) {
        self.add_with_headers(path, body, &[]);
    }

    /// Serve `body` at `path` with extra response headers.
    pub fn add_with_headers(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) {
        self.insert(path, Content::Body(Arc::new(body)), headers);
    }

    /// Answer `path` with a 302 to `location`, with extra headers (e.g. `X-Linked-Etag`).
    pub fn redirect(&self, path: &str, location: &str, headers: &[(&str, &str)]) {
        self.insert(path, Content::Redirect(location.to_string()), headers);
    }

    fn insert(&self, path: &str, content: Content, headers: &[(&str, &str)]) {
        self.lock().routes.insert(
            path.to_string(),
            Route {
                content,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                queued: VecDeque::new(),
                sticky: Vec::new(),
            },
        );
    }

    /// Apply `fault` to the next GET of `path` that has no fault queued before it.
    pub fn fault(&self, path: &str, fault: Fault) {
        if let Some(r) = self.lock().routes.get_mut(path) {
            r.queued.push_back(fault);
        }
    }

    /// Apply `fault` to every GET of `path`.
    pub fn always(&self, path: &str, fault: Fault) {
        if let Some(r) = self.lock().routes.get_mut(path) {
            r.sticky.push(fault);
        }
    }

    pub fn hits(&self, path: &str) -> Hits {
        self.lock().hits.get(path).cloned().unwrap_or_default()
    }

    /// GETs of all paths together.
    pub fn total_gets(&self) -> u64 {
        self.lock().hits.values().map(|h| h.gets).sum()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    range_start: Option<u64>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut range_start = None;
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range_start = value
                .trim()
                .strip_prefix("bytes=")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.trim().parse().ok());
        }
    }
    Ok(Some(Request {
        method,
        path,
        range_start,
    }))
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let _ = conn.set_nodelay(true);
    let Some(req) = read_request(&conn)? else {
        return Ok(());
    };
    let head_only = req.method == "HEAD";
    // Look up the route and take this request's faults under the lock.
    let (route, faults) = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let hits = st.hits.entry(req.path.clone()).or_default();
        if head_only {
            hits.heads += 1;
        } else {
            hits.gets += 1;
            if let Some(r) = req.range_start {
                hits.ranges.push(r);
            }
        }
        match st.routes.get_mut(&req.path) {
            None => (None, Vec::new()),
            Some(route) => {
                let mut faults = route.sticky.clone();
                if !head_only && let Some(f) = route.queued.pop_front() {
                    faults.push(f);
                }
                let names: Vec<String> = faults.iter().map(|f| format!("{f:?}")).collect();
                let route = route.clone();
                if let Some(h) = st.hits.get_mut(&req.path) {
                    h.faults.extend(names);
                }
                (Some(route), faults)
            }
        }
    };
    let extra: String = route
        .as_ref()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect()
        })
        .unwrap_or_default();
    let simple = |conn: &mut TcpStream, status: &str, extra: &str| -> std::io::Result<()> {
        let body = status.as_bytes();
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        )?;
        if !head_only {
            conn.write_all(body)?;
        }
        conn.flush()
    };
    let Some(route) = route else {
        return simple(&mut conn, "404 Not Found", "");
    };
    if !head_only
        && let Some(code) = faults.iter().find_map(|f| match f {
            Fault::Status(c) => Some(*c),
            _ => None,
        })
    {
        return simple(&mut conn, &format!("{code} Injected"), "");
    }
    let body = match &route.content {
        Content::Redirect(location) => {
            return simple(
                &mut conn,
                "302 Found",
                &format!("Location: {location}\r\n{extra}"),
            );
        }
        Content::Body(b) => b.clone(),
    };
    let ignore_range = faults.iter().any(|f| matches!(f, Fault::IgnoreRange));
    let total = body.len() as u64;
    let (status, start) = match req.range_start {
        Some(s) if !ignore_range && !head_only => {
            if s >= total {
                return simple(
                    &mut conn,
                    "416 Range Not Satisfiable",
                    &format!("Content-Range: bytes */{total}\r\n"),
                );
            }
            (
                format!(
                    "206 Partial Content\r\nContent-Range: bytes {s}-{}/{total}",
                    total - 1
                ),
                s as usize,
            )
        }
        _ => ("200 OK".to_string(), 0usize),
    };
    let len = body.len() - start;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n{extra}\r\n"
    )?;
    if head_only {
        return conn.flush();
    }
    let mut payload = &body[start..];
    let corrupted;
    if faults.iter().any(|f| matches!(f, Fault::Corrupt)) && !payload.is_empty() {
        let mut c = payload.to_vec();
        let mid = c.len() / 2;
        c[mid] ^= 0xff;
        corrupted = c;
        payload = &corrupted;
    }
    let cut = faults.iter().find_map(|f| match f {
        Fault::DropAfter(n) => Some((*n, None)),
        Fault::StallAfter(n, d) => Some((*n, Some(*d))),
        _ => None,
    });
    let send = cut
        .map(|(n, _)| n.min(payload.len()))
        .unwrap_or(payload.len());
    let mut sent = 0;
    for piece in payload[..send].chunks(1 << 20) {
        conn.write_all(piece)?;
        sent += piece.len();
        record_sent(state, &req.path, piece.len());
    }
    conn.flush()?;
    if let Some((_, Some(stall))) = cut {
        std::thread::sleep(stall);
    }
    debug_assert!(sent <= payload.len());
    // Dropping the stream closes the connection (early, when a fault cut the body).
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn record_sent(state: &Mutex<State>, path: &str, n: usize) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = st.hits.get_mut(path) {
        h.body_bytes_sent += n as u64;
    }
}

/// An HTML directory index linking `names` (and their `.md5` sidecars), like NCBI's.
pub fn html_index(names: &[&str]) -> String {
    let mut html = String::from(
        "<html>\n<head><title>Index of /pubmed/baseline</title></head>\n<body>\n<h1>Index of /pubmed/baseline</h1>\n<pre><a href=\"../\">Parent Directory</a>\n",
    );
    for n in names {
        html.push_str(&format!(
            "<a href=\"{n}\">{n}</a>   2025-12-10 14:00   18M\n<a href=\"{n}.md5\">{n}.md5</a>   2025-12-10 14:00   60\n"
        ));
    }
    html.push_str("</pre>\n</body>\n</html>\n");
    html
}

/// `n` deterministic pseudo-random bytes (xorshift; `seed` picks the stream).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}
