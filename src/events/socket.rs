//! Unix-socket sink: JSON lines to every connected client.
//!
//! - The socket is bound under a temporary name, set to mode 0660, then renamed into
//!   place, so it is never reachable with looser permissions. It is removed on close.
//! - A socket file left by a crashed run (nobody accepts on it) is replaced; a live
//!   one is refused.
//! - Each client has a bounded queue and its own writer thread. A client that does
//!   not read is disconnected, with a log line, when its queue is full or when a
//!   write to it has waited `write_timeout` (whichever comes first); detection and
//!   the other clients are never delayed.
//! - A client may send `{"subscribe":{"labels":[...],"scores":true}}` lines; bad
//!   lines get an `{"type":"error"}` reply; a line longer than
//!   [`MAX_CLIENT_LINE`] or invalid UTF-8 gets the client disconnected.
//! - Score lines (50 a second of audio) are queued only while some client asked
//!   for them, and only while the sink's queue is less than half full: when the
//!   socket thread falls behind, score lines are shed first and the other half of
//!   the queue is kept for events and status. (Without this, a 12-hour soak at
//!   140 × real time lost 3 `start` lines to a queue full of unwanted scores.)

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::hub::Sink;
use super::protocol::{error_line, Kind, Outgoing, Subscription, MAX_CLIENT_LINE};
use super::EventsError;

/// Limits of the socket sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SocketOptions {
    /// Lines queued per client before it counts as too slow and is disconnected.
    pub client_queue: usize,
    /// Most clients connected at once; more are told so and closed.
    pub max_clients: usize,
    /// A write to a client blocked this long disconnects it.
    pub write_timeout: Duration,
    /// Lines queued between the hub and the socket thread.
    pub sink_queue: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            client_queue: 1024,
            max_clients: 256,
            write_timeout: Duration::from_secs(2),
            sink_queue: 4096,
        }
    }
}

/// Counters of the socket sink.
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Clients currently connected.
    pub clients: AtomicUsize,
    /// Clients accepted in total.
    pub accepted: AtomicU64,
    /// Clients disconnected because they did not keep up.
    pub slow_disconnects: AtomicU64,
    /// Clients refused because `max_clients` were connected.
    pub refused: AtomicU64,
}

/// The socket sink (see the module docs).
pub struct SocketSink {
    tx: Option<Sender<Arc<Outgoing>>>,
    /// Lines the queue holds.
    capacity: usize,
    /// Whether some client subscribed to score lines: see [`ScoresWanted`].
    scores_wanted: Arc<ScoresWanted>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SocketStats>,
    path: PathBuf,
}

struct Client {
    id: u64,
    tx: Option<Sender<Arc<Outgoing>>>,
    sub: Arc<Mutex<Subscription>>,
    stream: UnixStream,
    writer: Option<JoinHandle<WriterEnd>>,
    reader: Option<JoinHandle<()>>,
}

/// Why a client's writer thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterEnd {
    /// Its queue was closed (the daemon disconnected it) and what was queued is out.
    Drained,
    /// The client closed its end.
    Left,
    /// A write waited `write_timeout` on a full socket: the client is not reading.
    Stalled,
}

/// Logs and counts a client cut off for not reading.
fn slow_client(id: u64, stats: &SocketStats) {
    stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(client = id, "client is not reading; disconnected");
}

impl Client {
    /// Closes the connection. With `wait`, the writer first delivers what is queued
    /// (bounded by the write timeout), both threads are joined and the writer's end
    /// is returned; without, the connection is cut at once, the threads end on their
    /// own and `None` is returned.
    fn disconnect(mut self, wait: bool) -> Option<WriterEnd> {
        // The reader holds a sender (for error replies): stop it first so the
        // writer's queue can end.
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
        if let Some(r) = self.reader.take() {
            if wait {
                let _ = r.join();
            }
        }
        self.tx.take();
        if !wait {
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        let end = match self.writer.take() {
            Some(w) if wait => w.join().ok(),
            _ => None,
        };
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        end
    }
}

/// Whether any client wants score lines, as one atomic word: bit 0 is the flag,
/// the rest counts subscription changes. A client's reader sets the flag at once
/// when it subscribes to scores (so the very next score line is queued); the socket
/// thread recomputes it from all clients and stores the result only if no
/// subscription changed meanwhile (compare-and-swap), so it never clears the flag
/// under a subscription it did not see.
#[derive(Debug, Default)]
struct ScoresWanted(AtomicU64);

impl ScoresWanted {
    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst) & 1 == 1
    }

    /// A client's subscription changed (after it was stored).
    fn changed(&self, wants_scores: bool) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some((((v >> 1) + 1) << 1) | (v & 1) | u64::from(wants_scores))
            });
    }

    /// Sets the flag to `any()` unless a subscription changed while computing it.
    fn recompute(&self, any: impl FnOnce() -> bool) {
        let v0 = self.0.load(Ordering::SeqCst);
        let new = (v0 & !1) | u64::from(any());
        let _ = self
            .0
            .compare_exchange(v0, new, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Prepares `path` for binding: removes a stale socket, refuses a live one or a
/// non-socket file.
fn clear_stale(path: &Path) -> Result<(), EventsError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EventsError::Bind {
            path: path.to_path_buf(),
            source,
        }),
        Ok(m) if !m.file_type().is_socket() => Err(EventsError::NotASocket {
            path: path.to_path_buf(),
        }),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(EventsError::InUse {
                path: path.to_path_buf(),
            }),
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing stale socket from an earlier run");
                std::fs::remove_file(path).map_err(|source| EventsError::Bind {
                    path: path.to_path_buf(),
                    source,
                })
            }
        },
    }
}

/// Binds a listener at `path` with mode 0660 (bind under a temporary name, chmod,
/// rename).
fn bind(path: &Path) -> Result<UnixListener, EventsError> {
    let err = |source| EventsError::Bind {
        path: path.to_path_buf(),
        source,
    };
    clear_stale(path)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("socket path has no file name")))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    let done = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(listener)
}

impl SocketSink {
    /// Binds `path` and starts serving. `hello` is sent first to every client;
    /// `classes` validate subscriptions.
    pub fn bind(
        path: &Path,
        hello: Arc<Outgoing>,
        classes: Vec<String>,
        opts: SocketOptions,
    ) -> Result<SocketSink, EventsError> {
        let listener = bind(path)?;
        listener
            .set_nonblocking(true)
            .map_err(|source| EventsError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
        let capacity = opts.sink_queue.max(16);
        let (tx, rx) = bounded::<Arc<Outgoing>>(capacity);
        let stats = Arc::new(SocketStats::default());
        let st = stats.clone();
        let p = path.to_path_buf();
        let scores_wanted = Arc::new(ScoresWanted::default());
        let sw = scores_wanted.clone();
        let thread = std::thread::Builder::new()
            .name("hark-socket".into())
            .spawn(move || serve(listener, rx, hello, classes, opts, st, p, sw))
            .map_err(|source| EventsError::Thread {
                name: "hark-socket".into(),
                source,
            })?;
        Ok(SocketSink {
            tx: Some(tx),
            capacity,
            scores_wanted,
            thread: Some(thread),
            stats,
            path: path.to_path_buf(),
        })
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<SocketStats> {
        self.stats.clone()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for SocketSink {
    fn name(&self) -> &str {
        "socket"
    }

    fn offer(&self, out: &Arc<Outgoing>) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        match out.kind {
            // Lines no client wants: mel columns, and scores without a subscriber.
            Kind::Mel => return true,
            Kind::Scores if !self.scores_wanted.get() => return true,
            // Score lines are shed first: half the queue stays for the rest.
            Kind::Scores if tx.len() >= self.capacity / 2 => return false,
            _ => {}
        }
        match tx.try_send(out.clone()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => true,
            Err(TrySendError::Full(_)) => false,
        }
    }

    fn close(mut self: Box<Self>) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    listener: UnixListener,
    rx: Receiver<Arc<Outgoing>>,
    hello: Arc<Outgoing>,
    classes: Vec<String>,
    opts: SocketOptions,
    stats: Arc<SocketStats>,
    path: PathBuf,
    scores_wanted: Arc<ScoresWanted>,
) {
    let classes = Arc::new(classes);
    let mut clients: Vec<Client> = Vec::new();
    let mut last_status: Option<Arc<Outgoing>> = None;
    let mut next_id = 0u64;
    loop {
        // New connections wait at most this long for their `hello`; an idle daemon
        // wakes 10 times a second (at 50 it cost 0.6 % of a core).
        let msg = rx.recv_timeout(ACCEPT_POLL);
        // Accept everything pending before delivering `msg`, so that a client whose
        // connection was made before the line was published receives it.
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if clients.len() >= opts.max_clients {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        let mut s = stream;
                        let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                        let _ = writeln!(s, "{}", error_line("too many clients"));
                        continue;
                    }
                    next_id += 1;
                    match start_client(
                        next_id,
                        stream,
                        &hello,
                        &last_status,
                        &classes,
                        opts,
                        &scores_wanted,
                    ) {
                        Ok(c) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(client = c.id, "client connected");
                            clients.push(c);
                        }
                        Err(e) => tracing::warn!(error = %e, "could not start client"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    break;
                }
            }
        }
        stats.clients.store(clients.len(), Ordering::Relaxed);
        scores_wanted.recompute(|| {
            clients
                .iter()
                .any(|c| c.sub.lock().map(|s| s.scores).unwrap_or(true))
        });
        match msg {
            Ok(out) => {
                if out.kind == Kind::Status {
                    last_status = Some(out.clone());
                }
                deliver(&mut clients, &out, &stats);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Forget clients whose connection ended.
        if !clients
            .iter()
            .any(|c| c.writer.as_ref().is_some_and(|w| w.is_finished()))
        {
            continue;
        }
        let (gone, alive): (Vec<_>, Vec<_>) = clients
            .into_iter()
            .partition(|c| c.writer.as_ref().is_some_and(|w| w.is_finished()));
        clients = alive;
        for c in gone {
            let id = c.id;
            if c.disconnect(true) == Some(WriterEnd::Stalled) {
                slow_client(id, &stats);
            } else {
                tracing::debug!(client = id, "client left");
            }
        }
    }
    // Shutdown: let every writer deliver what it has, then close.
    for c in clients {
        let id = c.id;
        if c.disconnect(true) == Some(WriterEnd::Stalled) {
            slow_client(id, &stats);
        }
    }
    stats.clients.store(0, Ordering::Relaxed);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove socket");
    }
}

/// How often the socket thread looks for new connections when no line is queued.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

fn deliver(clients: &mut Vec<Client>, out: &Arc<Outgoing>, stats: &SocketStats) {
    let mut i = 0;
    while i < clients.len() {
        let c = &clients[i];
        let wanted = c.sub.lock().map(|s| s.wants(out)).unwrap_or(true);
        let full = wanted
            && matches!(
                c.tx.as_ref().map(|tx| tx.try_send(out.clone())),
                Some(Err(TrySendError::Full(_)))
            );
        if full {
            let c = clients.swap_remove(i);
            slow_client(c.id, stats);
            c.disconnect(false);
        } else {
            i += 1;
        }
    }
}

fn start_client(
    id: u64,
    stream: UnixStream,
    hello: &Arc<Outgoing>,
    last_status: &Option<Arc<Outgoing>>,
    classes: &Arc<Vec<String>>,
    opts: SocketOptions,
    scores_wanted: &Arc<ScoresWanted>,
) -> std::io::Result<Client> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(opts.write_timeout))?;
    let (tx, rx) = bounded::<Arc<Outgoing>>(opts.client_queue.max(4));
    let _ = tx.try_send(hello.clone());
    if let Some(s) = last_status {
        let _ = tx.try_send(s.clone());
    }
    let sub = Arc::new(Mutex::new(Subscription::default()));
    let wstream = stream.try_clone()?;
    let writer = std::thread::Builder::new()
        .name(format!("hark-client-{id}-w"))
        .spawn(move || write_loop(wstream, rx))?;
    let rstream = stream.try_clone()?;
    let (sub2, tx2, classes) = (sub.clone(), tx.clone(), classes.clone());
    let wanted = scores_wanted.clone();
    let reader = std::thread::Builder::new()
        .name(format!("hark-client-{id}-r"))
        .spawn(move || read_loop(id, rstream, sub2, tx2, &classes, &wanted))?;
    Ok(Client {
        id,
        tx: Some(tx),
        sub,
        stream,
        writer: Some(writer),
        reader: Some(reader),
    })
}

fn write_loop(stream: UnixStream, rx: Receiver<Arc<Outgoing>>) -> WriterEnd {
    let mut w = std::io::BufWriter::new(&stream);
    let mut sent = || -> std::io::Result<()> {
        while let Ok(out) = rx.recv() {
            w.write_all(out.line.as_bytes())?;
            w.write_all(b"\n")?;
            if rx.is_empty() {
                w.flush()?;
            }
        }
        w.flush()
    };
    let end = match sent() {
        Ok(()) => WriterEnd::Drained,
        // The socket's write timeout: the client's buffer stayed full that long.
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            WriterEnd::Stalled
        }
        Err(_) => WriterEnd::Left,
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    end
}

fn read_loop(
    id: u64,
    mut stream: UnixStream,
    sub: Arc<Mutex<Subscription>>,
    tx: Sender<Arc<Outgoing>>,
    classes: &[String],
    scores_wanted: &ScoresWanted,
) {
    let reply = |msg: &str| {
        let _ = tx.try_send(Arc::new(Outgoing {
            kind: Kind::Hello,
            label: None,
            line: error_line(msg),
        }));
    };
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let Ok(text) = std::str::from_utf8(&line) else {
                reply("invalid UTF-8; disconnecting");
                tracing::warn!(client = id, "client sent invalid UTF-8; disconnected");
                disconnect_after_reply(&stream);
                return;
            };
            if text.trim().is_empty() {
                continue;
            }
            match Subscription::parse(text, classes) {
                Ok(s) => {
                    let scores = s.scores;
                    if let Ok(mut g) = sub.lock() {
                        *g = s;
                    }
                    scores_wanted.changed(scores);
                }
                Err(e) => reply(&e),
            }
        }
        if pending.len() > MAX_CLIENT_LINE {
            reply("line too long; disconnecting");
            tracing::warn!(client = id, "client sent an over-long line; disconnected");
            disconnect_after_reply(&stream);
            return;
        }
    }
}

/// Gives the writer a moment to send the error reply, then closes the connection.
fn disconnect_after_reply(stream: &UnixStream) {
    std::thread::sleep(Duration::from_millis(50));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::Event;
    use crate::events::hub::Hub;
    use crate::events::protocol::{Hello, Message};
    use std::io::{BufRead, BufReader};
    use std::time::{Instant, SystemTime};

    fn hello() -> Arc<Outgoing> {
        Hello {
            version: 1,
            model: "m".into(),
            classes: vec!["a".into(), "b".into()],
            source: "test".into(),
        }
        .to_outgoing()
    }

    fn start_event(i: usize, label: &str) -> Message {
        Message::Event {
            event: Event::Start {
                id: format!("s-{i}"),
                label: label.into(),
                class: 0,
                t: i as f64,
                score: 0.9,
            },
            wall: SystemTime::now(),
        }
    }

    fn read_line(r: &mut BufReader<UnixStream>) -> serde_json::Value {
        let mut s = String::new();
        r.read_line(&mut s).unwrap();
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s:?}"))
    }

    fn wait_clients(stats: &SocketStats, n: usize) {
        let t0 = Instant::now();
        while stats.clients.load(Ordering::Relaxed) != n {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "clients never reached {n}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn score_lines_are_queued_only_when_wanted_and_shed_before_events() {
        let (tx, rx) = bounded::<Arc<Outgoing>>(16);
        let sink = SocketSink {
            tx: Some(tx),
            capacity: 16,
            scores_wanted: Arc::new(ScoresWanted::default()),
            thread: None,
            stats: Arc::new(SocketStats::default()),
            path: PathBuf::from("unused"),
        };
        let classes = ["a".to_string(), "b".to_string()];
        let scores = Message::Scores {
            t: 0.0,
            scores: vec![0.1, 0.2],
        }
        .to_outgoing(&classes);
        let event = start_event(1, "a").to_outgoing(&classes);
        // Nobody subscribed: accepted, not queued.
        assert!(sink.offer(&scores));
        assert_eq!(rx.len(), 0);
        // A subscriber: score lines fill half the queue, then are shed...
        sink.scores_wanted.changed(true);
        for _ in 0..8 {
            assert!(sink.offer(&scores));
        }
        assert!(!sink.offer(&scores));
        assert_eq!(rx.len(), 8);
        // ... while events still find room.
        for _ in 0..8 {
            assert!(sink.offer(&event));
        }
        assert!(!sink.offer(&event));
        // The socket thread's recompute clears the flag once nobody wants scores,
        // but never over a subscription change it did not see.
        sink.scores_wanted.recompute(|| {
            sink.scores_wanted.changed(true);
            false
        });
        assert!(sink.scores_wanted.get());
        sink.scores_wanted.recompute(|| false);
        assert!(!sink.scores_wanted.get());
    }

    #[test]
    fn socket_is_0660_stale_replaced_live_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        // A stale socket: bound, then the listener dropped without unlinking.
        drop(UnixListener::bind(&path).unwrap());
        let sink =
            SocketSink::bind(&path, hello(), vec!["a".into()], SocketOptions::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let e = SocketSink::bind(&path, hello(), vec![], SocketOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, EventsError::InUse { .. }), "{e}");
        Box::new(sink).close();
        assert!(!path.exists());
        // A regular file is never replaced.
        std::fs::write(&path, b"x").unwrap();
        let e = SocketSink::bind(&path, hello(), vec![], SocketOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, EventsError::NotASocket { .. }), "{e}");
        // A missing directory is named.
        let e = SocketSink::bind(
            &dir.path().join("no/such/dir/h.sock"),
            hello(),
            vec![],
            SocketOptions::default(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    }

    #[test]
    fn clients_get_hello_then_events_and_subscriptions_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let classes: Vec<String> = vec!["a".into(), "b".into()];
        let sink =
            SocketSink::bind(&path, hello(), classes.clone(), SocketOptions::default()).unwrap();
        let stats = sink.stats();
        let (hub, h) = Hub::start(classes, vec![Box::new(sink)], 64).unwrap();
        let mut all = BufReader::new(UnixStream::connect(&path).unwrap());
        let mut only_b = BufReader::new(UnixStream::connect(&path).unwrap());
        wait_clients(&stats, 2);
        assert_eq!(read_line(&mut all)["type"], "hello");
        assert_eq!(read_line(&mut only_b)["type"], "hello");
        only_b
            .get_mut()
            .write_all(b"{\"subscribe\":{\"labels\":[\"b\"],\"scores\":true}}\n")
            .unwrap();
        only_b
            .get_mut()
            .write_all(b"{\"subscribe\":{\"labels\":[\"zzz\"]}}\n")
            .unwrap();
        let err = read_line(&mut only_b);
        assert_eq!(err["type"], "error");
        assert!(err["message"].as_str().unwrap().contains("zzz"));
        h.send(start_event(1, "a"));
        h.send(start_event(2, "b"));
        h.send(Message::Scores {
            t: 0.5,
            scores: vec![0.1, 0.2],
        });
        assert_eq!(read_line(&mut all)["id"], "s-1");
        assert_eq!(read_line(&mut all)["id"], "s-2");
        assert_eq!(read_line(&mut only_b)["id"], "s-2");
        assert_eq!(read_line(&mut only_b)["type"], "scores");
        h.shutdown();
        hub.join();
        // After shutdown the connection is closed (EOF) and the socket removed.
        let mut s = String::new();
        assert_eq!(all.read_line(&mut s).unwrap(), 0);
        assert!(!path.exists());
    }

    /// A socket sink (200 ms write timeout, the given client queue) behind a hub, with
    /// two connected clients: the "sleeper" that never reads, and `other`.
    struct TwoClients {
        _dir: tempfile::TempDir,
        stats: Arc<SocketStats>,
        hub: Hub,
        h: crate::events::hub::HubHandle,
        sleeper: UnixStream,
        other: UnixStream,
    }

    fn two_clients(client_queue: usize) -> TwoClients {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let opts = SocketOptions {
            client_queue,
            max_clients: 8,
            write_timeout: Duration::from_millis(200),
            sink_queue: 4096,
        };
        let sink = SocketSink::bind(&path, hello(), vec!["a".into()], opts).unwrap();
        let stats = sink.stats();
        let (hub, h) = Hub::start(vec!["a".into()], vec![Box::new(sink)], 4096).unwrap();
        let sleeper = UnixStream::connect(&path).unwrap();
        let other = UnixStream::connect(&path).unwrap();
        wait_clients(&stats, 2);
        TwoClients {
            _dir: dir,
            stats,
            hub,
            h,
            sleeper,
            other,
        }
    }

    #[test]
    fn a_client_that_never_reads_is_dropped_and_others_get_everything() {
        let TwoClients {
            _dir,
            stats,
            hub,
            h,
            sleeper: _sleeper,
            other: good,
        } = two_clients(1024);
        let n = 20_000;
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(good);
            let mut count = 0;
            let mut line = String::new();
            while r.read_line(&mut line).unwrap() > 0 {
                if line.contains("\"start\"") {
                    count += 1;
                }
                line.clear();
            }
            count
        });
        for i in 0..n {
            h.send(start_event(i, "a"));
            if i % 100 == 0 {
                // Let the good reader keep up; the sleeper never will.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let t0 = Instant::now();
        while stats.slow_disconnects.load(Ordering::Relaxed) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        h.shutdown();
        hub.join();
        assert_eq!(reader.join().unwrap(), n);
        assert_eq!(stats.slow_disconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_client_whose_socket_stays_full_is_cut_off_by_the_write_timeout_and_counted() {
        // A queue far larger than what is sent: only the write timeout can cut the
        // sleeper. A client that closes its end is not counted as slow.
        let TwoClients {
            _dir,
            stats,
            hub,
            h,
            sleeper: _sleeper,
            other: leaver,
        } = two_clients(1_000_000);
        drop(leaver);
        let t0 = Instant::now();
        let mut i = 0;
        while stats.slow_disconnects.load(Ordering::Relaxed) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(20), "never cut off");
            for _ in 0..100 {
                h.send(start_event(i, "a"));
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        h.shutdown();
        hub.join();
        assert_eq!(stats.slow_disconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn over_long_lines_and_invalid_utf8_disconnect_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let sink =
            SocketSink::bind(&path, hello(), vec!["a".into()], SocketOptions::default()).unwrap();
        let (hub, h) = Hub::start(vec!["a".into()], vec![Box::new(sink)], 64).unwrap();
        for payload in [vec![b'x'; MAX_CLIENT_LINE + 10], b"\xff\xfe\n".to_vec()] {
            let mut c = UnixStream::connect(&path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.write_all(&payload);
            let mut r = BufReader::new(c);
            assert_eq!(read_line(&mut r)["type"], "hello");
            assert_eq!(read_line(&mut r)["type"], "error");
            let mut s = String::new();
            assert_eq!(r.read_line(&mut s).unwrap(), 0, "still connected: {s}");
        }
        h.shutdown();
        hub.join();
    }
}
