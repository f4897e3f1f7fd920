//! The live web page (`hark run --http 127.0.0.1:8080`): one HTTP server that
//! serves the page, its data as Server-Sent Events, and Prometheus metrics.
//!
//! Routes: `/` (the page), `/app.js`, `/style.css` (embedded in the binary with
//! `include_str!`: no CDN), `/events` (Server-Sent Events: every hub line as one
//! `data:` message), `/metrics` (Prometheus text, see [`metrics`]), `/healthz`.
//!
//! Threads and bounds:
//! - `hark-http-fanout` takes lines from the hub through a bounded queue (the hub's
//!   `offer` only `try_send`s), keeps what a newly connected page needs (hello,
//!   last status, the latest events) and offers each line to every client's own
//!   bounded queue. A client whose queue is full is dropped, with a log line and
//!   a count; it is never waited for. Score lines are thinned to a few per second.
//! - `hark-http` accepts requests (tiny_http) and answers the static routes inline.
//! - one `hark-http-sse` thread per page client writes its queue to the connection.
//!
//! The server binds to loopback unless another address is given explicitly; the
//! page has no authentication, so a non-loopback address logs a warning.

pub mod metrics;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::hub::Sink;
use super::protocol::{Kind, Outgoing};
use super::EventsError;
pub use metrics::Metrics;

/// The page, its script and its style sheet, embedded in the binary.
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Events kept for pages that connect later (shown in their event log).
const RECENT_EVENTS: usize = 50;
/// A page client's connection idle this long gets an SSE comment, so proxies and
/// the browser see it alive.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long [`HttpSink::close`] lets page clients deliver their last lines.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Settings of the web server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpOptions {
    /// Address to listen on (port 0 picks a free port; see [`HttpSink::local_addr`]).
    pub addr: SocketAddr,
    /// Lines queued per page client before it counts as too slow and is dropped.
    pub client_queue: usize,
    /// Most page clients at once; more get `503`.
    pub max_clients: usize,
    /// One `scores` line in this many is sent to pages (the top-k view does not
    /// need every frame); 1 sends all.
    pub scores_every: usize,
    /// Lines queued between the hub and the fan-out thread.
    pub sink_queue: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            client_queue: 512,
            max_clients: 16,
            scores_every: 5,
            sink_queue: 4096,
        }
    }
}

/// Parses `--http`'s value: `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`,
/// `localhost:8080`) or a bare `PORT`, which means loopback.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("`{s}` resolves to no address")),
        Err(e) => Err(format!(
            "`{s}`: expected HOST:PORT (e.g. 127.0.0.1:8080) or a port number: {e}"
        )),
    }
}

/// One page client, as seen by the fan-out thread.
struct Client {
    id: u64,
    tx: Sender<Arc<Outgoing>>,
}

/// What the fan-out thread and the accept thread share, under one lock so that a
/// new client gets the replay and then every later line, none twice or lost.
#[derive(Default)]
struct State {
    clients: Vec<Client>,
    hello: Option<Arc<Outgoing>>,
    status: Option<Arc<Outgoing>>,
    recent: VecDeque<Arc<Outgoing>>,
}

struct Shared {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    opts: HttpOptions,
    next_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The web page sink (see the module docs).
pub struct HttpSink {
    tx: Option<Sender<Arc<Outgoing>>>,
    fanout: Option<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl HttpSink {
    /// Binds `opts.addr` and starts serving. `hello` is the first line every page
    /// gets; `metrics` are rendered on `/metrics` (and count page clients).
    pub fn start(
        opts: HttpOptions,
        hello: Arc<Outgoing>,
        metrics: Arc<Metrics>,
    ) -> Result<HttpSink, EventsError> {
        let bind_err = |source| EventsError::Http {
            addr: opts.addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(opts.addr).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| bind_err(std::io::Error::other(e.to_string())))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the web page is served beyond this machine and has no authentication");
        }
        tracing::info!(url = %format!("http://{addr}/"), "serving the live page");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                hello: Some(hello),
                ..State::default()
            }),
            metrics,
            opts,
            next_id: AtomicU64::new(0),
        });
        let (tx, rx) = bounded::<Arc<Outgoing>>(opts.sink_queue.max(16));
        let stop = Arc::new(AtomicBool::new(false));
        let spawn_err = |name: &str, source| EventsError::Thread {
            name: name.into(),
            source,
        };
        let fanout = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hark-http-fanout".into())
                .spawn(move || fanout(rx, &shared))
                .map_err(|e| spawn_err("hark-http-fanout", e))?
        };
        let server = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("hark-http".into())
                .spawn(move || serve(&server, &shared, &stop))
                .map_err(|e| spawn_err("hark-http", e))?
        };
        Ok(HttpSink {
            tx: Some(tx),
            fanout: Some(fanout),
            server: Some(server),
            stop,
            addr,
            shared,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        "http"
    }

    fn offer(&self, out: &Arc<Outgoing>) -> bool {
        match &self.tx {
            Some(tx) => match tx.try_send(out.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => true,
                Err(TrySendError::Full(_)) => false,
            },
            None => true,
        }
    }

    fn close(mut self: Box<Self>) {
        // The fan-out thread delivers what is queued, then drops every client's
        // sender: each page connection ends after its last lines.
        self.tx.take();
        if let Some(t) = self.fanout.take() {
            let _ = t.join();
        }
        let t0 = Instant::now();
        while self.shared.metrics.http_clients.load(Ordering::Relaxed) > 0
            && t0.elapsed() < CLOSE_GRACE
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

/// The fan-out loop: hub lines → replay state → every client's queue.
fn fanout(rx: Receiver<Arc<Outgoing>>, shared: &Shared) {
    let every = shared.opts.scores_every.max(1) as u64;
    let mut n_scores = 0u64;
    let mut warned_at: Option<Instant> = None;
    for out in rx {
        match out.kind {
            Kind::Scores => {
                n_scores += 1;
                if (n_scores - 1) % every != 0 {
                    continue;
                }
            }
            Kind::Hello | Kind::Status | Kind::Event | Kind::Mel => {}
        }
        let mut st = shared.lock();
        match out.kind {
            Kind::Hello => st.hello = Some(out.clone()),
            Kind::Status => st.status = Some(out.clone()),
            Kind::Event => {
                if st.recent.len() == RECENT_EVENTS {
                    st.recent.pop_front();
                }
                st.recent.push_back(out.clone());
            }
            Kind::Scores | Kind::Mel => {}
        }
        st.clients.retain(|c| match c.tx.try_send(out.clone()) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(_)) => {
                let total = shared
                    .metrics
                    .http_slow_disconnects
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                let now = Instant::now();
                if warned_at.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(10)) {
                    warned_at = Some(now);
                    tracing::warn!(
                        client = c.id,
                        slow_disconnects_total = total,
                        "web page client is not keeping up; dropping it"
                    );
                }
                false
            }
        });
    }
    shared.lock().clients.clear();
}

/// The accept loop; answers static routes inline and starts SSE client threads.
fn serve(server: &tiny_http::Server, shared: &Arc<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(req)) => handle(req, shared),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "web server stopped accepting");
                break;
            }
        }
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// A response with a body and the page's safety headers.
fn text(
    status: u16,
    content_type: &str,
    body: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
    for h in [
        header("Content-Type", content_type),
        header("Cache-Control", "no-store"),
        header("X-Content-Type-Options", "nosniff"),
        header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; connect-src 'self'",
        ),
    ]
    .into_iter()
    .flatten()
    {
        r.add_header(h);
    }
    r
}

/// Whether a request's `Host` names this machine's loopback (`localhost`,
/// `127.0.0.1`, `[::1]`, with any port). A page served on loopback answers only
/// those, so a web site cannot reach it through DNS rebinding.
fn host_is_loopback(req: &tiny_http::Request) -> bool {
    let Some(h) = req.headers().iter().find(|h| h.field.equiv("Host")) else {
        return false;
    };
    let host = h.value.as_str().trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn handle(req: tiny_http::Request, shared: &Arc<Shared>) {
    let path = req
        .url()
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .to_string();
    let method = req.method().clone();
    if shared.opts.addr.ip().is_loopback() && !host_is_loopback(&req) {
        let _ = req.respond(text(
            421,
            "text/plain; charset=utf-8",
            "this page answers only to localhost\n",
        ));
        return;
    }
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        let _ = req.respond(text(405, "text/plain; charset=utf-8", "only GET\n"));
        return;
    }
    let r = match path.as_str() {
        "/" | "/index.html" => text(200, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => text(200, "text/javascript; charset=utf-8", APP_JS),
        "/style.css" => text(200, "text/css; charset=utf-8", STYLE_CSS),
        "/metrics" => text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &shared.metrics.render(),
        ),
        "/healthz" => text(200, "text/plain; charset=utf-8", "ok\n"),
        "/events" if method == tiny_http::Method::Get => {
            sse(req, shared);
            return;
        }
        _ => text(404, "text/plain; charset=utf-8", "not found\n"),
    };
    if let Err(e) = req.respond(r) {
        tracing::debug!(error = %e, path, "web client went away");
    }
}

/// Registers a page client and starts its writer thread.
fn sse(req: tiny_http::Request, shared: &Arc<Shared>) {
    let opts = &shared.opts;
    let chunked = *req.http_version() >= tiny_http::HTTPVersion(1, 1);
    let (tx, rx) = bounded::<Arc<Outgoing>>(opts.client_queue.max(8));
    {
        let mut st = shared.lock();
        if st.clients.len() >= opts.max_clients {
            drop(st);
            tracing::warn!(
                max_clients = opts.max_clients,
                "refusing a web page client: too many"
            );
            let _ = req.respond(text(503, "text/plain; charset=utf-8", "too many clients\n"));
            return;
        }
        // The replay fits: the queue holds at least 8 lines and the replay is at most
        // hello + status + RECENT_EVENTS; whatever does not fit is skipped.
        let replay = st
            .hello
            .iter()
            .chain(st.status.iter())
            .chain(st.recent.iter());
        for out in replay {
            let _ = tx.try_send(out.clone());
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        st.clients.push(Client { id, tx });
    }
    shared.metrics.http_clients.fetch_add(1, Ordering::Relaxed);
    let metrics = shared.metrics.clone();
    let spawned = std::thread::Builder::new()
        .name("hark-http-sse".into())
        .spawn(move || {
            let w = req.into_writer();
            if let Err(e) = write_stream(w, &rx, chunked) {
                tracing::debug!(error = %e, "web page client went away");
            }
            metrics.http_clients.fetch_sub(1, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        // The closure (and the client's receiver) is gone: the fan-out thread drops
        // the client at its next line.
        shared.metrics.http_clients.fetch_sub(1, Ordering::Relaxed);
        tracing::error!(error = %e, "cannot start a web page client thread");
    }
}

/// Writes the SSE response: the head, then each queued line as one message, until
/// the queue is closed (end of stream or a slow client dropped).
fn write_stream(
    mut w: Box<dyn Write + Send>,
    rx: &Receiver<Arc<Outgoing>>,
    chunked: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.{} 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n{}\r\n",
        u8::from(chunked),
        if chunked {
            "Transfer-Encoding: chunked\r\n"
        } else {
            "Connection: close\r\n"
        }
    );
    w.write_all(head.as_bytes())?;
    let send = |w: &mut Box<dyn Write + Send>, msg: &str| -> std::io::Result<()> {
        if chunked {
            write!(w, "{:x}\r\n{msg}\r\n", msg.len())?;
        } else {
            w.write_all(msg.as_bytes())?;
        }
        w.flush()
    };
    // Ask the browser to reconnect quickly after the daemon restarts.
    send(&mut w, "retry: 2000\n\n")?;
    loop {
        match rx.recv_timeout(KEEPALIVE) {
            Ok(out) => send(&mut w, &sse_message(&out.line))?,
            Err(RecvTimeoutError::Timeout) => send(&mut w, ": keepalive\n\n")?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    w.flush()
}

/// One SSE message carrying a JSON line (which has no newlines: serde_json escapes
/// them), split defensively on newlines anyway.
fn sse_message(line: &str) -> String {
    let mut s = String::with_capacity(line.len() + 8);
    for part in line.split('\n') {
        s.push_str("data: ");
        s.push_str(part);
        s.push('\n');
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpStream;

    fn line(kind: Kind, text: &str) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            kind,
            label: None,
            line: text.into(),
        })
    }

    fn start(opts: HttpOptions) -> (Box<HttpSink>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(vec!["a".into()]));
        let sink = HttpSink::start(
            HttpOptions {
                addr: "127.0.0.1:0".parse().unwrap(),
                ..opts
            },
            line(Kind::Hello, r#"{"type":"hello"}"#),
            metrics.clone(),
        )
        .unwrap();
        (Box::new(sink), metrics)
    }

    fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    /// Opens `/events` and returns a reader positioned after the response head.
    fn open_events(addr: SocketAddr) -> BufReader<TcpStream> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.starts_with("HTTP/1.0 200"), "{l}");
        while l != "\r\n" {
            l.clear();
            r.read_line(&mut l).unwrap();
        }
        r
    }

    /// The next `data:` payload.
    fn next_data(r: &mut BufReader<TcpStream>) -> Option<String> {
        let mut l = String::new();
        loop {
            l.clear();
            if r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            if let Some(d) = l.strip_prefix("data: ") {
                return Some(d.trim_end().to_string());
            }
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "condition never met"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn bare_port_means_loopback() {
        assert_eq!(
            parse_addr("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_addr("localhost:80").unwrap().ip().is_loopback());
        let e = parse_addr("nonsense:port").unwrap_err();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn serves_page_assets_metrics_and_404() {
        let (sink, metrics) = start(HttpOptions::default());
        metrics.windows.store(42, Ordering::Relaxed);
        let addr = sink.local_addr();
        let (head, body) = get(addr, "/");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_lowercase().contains("content-type: text/html"),
            "{head}"
        );
        assert!(body.contains("app.js") && body.contains("style.css"));
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no CDN"
        );
        let (_, js) = get(addr, "/app.js");
        assert!(js.contains("EventSource"));
        let (head, m) = get(addr, "/metrics");
        assert!(head.contains("version=0.0.4"), "{head}");
        assert!(m.contains("hark_windows_total 42"), "{m}");
        let (head, _) = get(addr, "/nope");
        assert!(head.contains(" 404"), "{head}");
        // DNS rebinding: a loopback page refuses other host names.
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET / HTTP/1.0\r\nHost: evil.example:80\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.contains(" 421 "), "{text}");
        for ok in ["127.0.0.1:8080", "[::1]:1", "LOCALHOST"] {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET /healthz HTTP/1.0\r\nHost: {ok}\r\n\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            assert!(text.contains(" 200 "), "{ok}: {text}");
        }
        sink.close();
    }

    #[test]
    fn a_page_gets_the_replay_then_live_lines_and_the_end() {
        let (sink, metrics) = start(HttpOptions::default());
        sink.offer(&line(Kind::Status, r#"{"type":"status","n":1}"#));
        sink.offer(&line(Kind::Event, r#"{"type":"start","n":2}"#));
        // Let the fan-out thread record them before the page connects.
        std::thread::sleep(Duration::from_millis(50));
        let mut r = open_events(sink.local_addr());
        wait_for(|| metrics.http_clients.load(Ordering::Relaxed) == 1);
        sink.offer(&line(Kind::Event, r#"{"type":"stop","n":3}"#));
        sink.offer(&line(Kind::Mel, r#"{"type":"mel","n":4}"#));
        let got: Vec<String> = (0..5).map(|_| next_data(&mut r).unwrap()).collect();
        assert_eq!(
            got,
            [
                r#"{"type":"hello"}"#,
                r#"{"type":"status","n":1}"#,
                r#"{"type":"start","n":2}"#,
                r#"{"type":"stop","n":3}"#,
                r#"{"type":"mel","n":4}"#,
            ]
        );
        sink.close();
        assert_eq!(next_data(&mut r), None, "the stream ends at close");
        assert_eq!(metrics.http_clients.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_page_that_does_not_read_is_dropped_and_others_go_on() {
        let (sink, metrics) = start(HttpOptions {
            client_queue: 8,
            ..HttpOptions::default()
        });
        let addr = sink.local_addr();
        // This client never reads: its socket buffers fill, then its queue.
        let mut stuck = TcpStream::connect(addr).unwrap();
        write!(stuck, "GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut good = open_events(addr);
        wait_for(|| metrics.http_clients.load(Ordering::Relaxed) == 2);
        let big = format!(r#"{{"type":"status","pad":"{}"}}"#, "x".repeat(64 * 1024));
        let mut sent = 0;
        while metrics.http_slow_disconnects.load(Ordering::Relaxed) == 0 {
            assert!(sent < 100_000, "the stuck client was never dropped");
            if sink.offer(&line(Kind::Status, &big)) {
                sent += 1;
            }
            // The good client keeps reading.
            while let Some(d) = next_data(&mut good) {
                if d.len() > 1000 {
                    break;
                }
            }
        }
        assert_eq!(metrics.http_slow_disconnects.load(Ordering::Relaxed), 1);
        sink.offer(&line(Kind::Event, r#"{"type":"start","after":true}"#));
        loop {
            let d = next_data(&mut good).unwrap();
            if d.contains("after") {
                break;
            }
        }
        drop(stuck);
        sink.close();
    }

    #[test]
    fn scores_are_thinned_for_pages() {
        let (sink, _metrics) = start(HttpOptions {
            scores_every: 3,
            ..HttpOptions::default()
        });
        let mut r = open_events(sink.local_addr());
        assert_eq!(next_data(&mut r).unwrap(), r#"{"type":"hello"}"#);
        for i in 0..10 {
            sink.offer(&line(
                Kind::Scores,
                &format!(r#"{{"type":"scores","i":{i}}}"#),
            ));
        }
        sink.offer(&line(Kind::Event, r#"{"type":"start"}"#));
        for i in [0, 3, 6, 9] {
            let want = format!(r#"{{"type":"scores","i":{i}}}"#);
            assert_eq!(next_data(&mut r).unwrap(), want);
        }
        assert_eq!(next_data(&mut r).unwrap(), r#"{"type":"start"}"#);
        sink.close();
    }

    #[test]
    fn too_many_pages_get_503() {
        let (sink, metrics) = start(HttpOptions {
            max_clients: 1,
            ..HttpOptions::default()
        });
        let _first = open_events(sink.local_addr());
        wait_for(|| metrics.http_clients.load(Ordering::Relaxed) == 1);
        let (head, _) = get(sink.local_addr(), "/events");
        assert!(head.contains(" 503"), "{head}");
        sink.close();
    }

    #[test]
    fn http_1_1_pages_get_chunked_messages_and_the_last_chunk() {
        let (sink, metrics) = start(HttpOptions::default());
        let mut s = TcpStream::connect(sink.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        wait_for(|| metrics.http_clients.load(Ordering::Relaxed) == 1);
        sink.close();
        // HTTP/1.1 keeps the connection open; the last chunk ends the response.
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !text.ends_with(b"\r\n0\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the last chunk");
            text.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let hello = sse_message(r#"{"type":"hello"}"#);
        let retry = "retry: 2000\n\n";
        assert_eq!(
            body,
            format!(
                "{:x}\r\n{retry}\r\n{:x}\r\n{hello}\r\n0\r\n\r\n",
                retry.len(),
                hello.len()
            )
        );
    }

    #[test]
    fn sse_messages_are_framed() {
        assert_eq!(sse_message(r#"{"a":1}"#), "data: {\"a\":1}\n\n");
        assert_eq!(sse_message("x\ny"), "data: x\ndata: y\n\n");
    }
}
