//! The event hub: one thread that serialises each message once and offers it to
//! every sink's bounded queue without blocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::protocol::{Message, Outgoing};
use super::EventsError;

/// A destination for serialised lines. `offer` must never block.
pub trait Sink: Send {
    /// Short name for logs (`socket`, `stdout`).
    fn name(&self) -> &str;
    /// Queues a line; returns `false` if it was dropped because the sink is behind.
    fn offer(&self, out: &Arc<Outgoing>) -> bool;
    /// Delivers what is queued, releases resources and waits for the sink's threads.
    fn close(self: Box<Self>);
}

/// Builds a replacement sink (or none) on the hub thread, after the old one closed.
pub type MakeSink = Box<dyn FnOnce() -> Result<Option<Box<dyn Sink>>, String> + Send>;

enum HubMsg {
    Message(Message),
    /// Close the sink named `name` (if any), then add what `make` builds.
    Replace {
        name: &'static str,
        make: MakeSink,
    },
    Shutdown,
}

/// Sends messages to the hub. Cloneable; `send` blocks only while the hub's bounded
/// queue is full (the hub never blocks, so this is brief), so no event is lost.
#[derive(Clone)]
pub struct HubHandle {
    tx: Sender<HubMsg>,
}

impl HubHandle {
    /// Queues a message for every sink. Returns `false` if the hub has stopped.
    pub fn send(&self, m: Message) -> bool {
        self.tx.send(HubMsg::Message(m)).is_ok()
    }

    /// Replaces the sink named `name` (config reload): the hub closes the old one
    /// first (so a socket path is free again), then adds what `make` builds. A
    /// failure is logged and leaves that sink off.
    pub fn replace_sink(&self, name: &'static str, make: MakeSink) {
        let _ = self.tx.send(HubMsg::Replace { name, make });
    }

    /// Asks the hub to deliver what it has, close every sink and stop.
    pub fn shutdown(&self) {
        let _ = self.tx.send(HubMsg::Shutdown);
    }
}

/// The running hub thread.
pub struct Hub {
    thread: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl Hub {
    /// Starts the hub over `sinks`. `classes` name the columns of score messages.
    /// `capacity` bounds the queue between the model thread and the hub.
    pub fn start(
        classes: Vec<String>,
        sinks: Vec<Box<dyn Sink>>,
        capacity: usize,
    ) -> Result<(Hub, HubHandle), EventsError> {
        let (tx, rx) = bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("hark-hub".into())
            .spawn(move || run(rx, classes, sinks, d))
            .map_err(|source| EventsError::Thread {
                name: "hark-hub".into(),
                source,
            })?;
        Ok((
            Hub {
                thread: Some(thread),
                dropped,
            },
            HubHandle { tx },
        ))
    }

    /// Lines dropped by sinks that were behind, in total.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the hub has closed every sink (after [`HubHandle::shutdown`] or
    /// once every handle is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    rx: Receiver<HubMsg>,
    classes: Vec<String>,
    mut sinks: Vec<Box<dyn Sink>>,
    dropped: Arc<AtomicU64>,
) {
    let mut warned_at: Option<std::time::Instant> = None;
    loop {
        let m = match rx.recv() {
            Ok(HubMsg::Message(m)) => m,
            Ok(HubMsg::Replace { name, make }) => {
                let (old, keep): (Vec<_>, Vec<_>) =
                    sinks.into_iter().partition(|s| s.name() == name);
                sinks = keep;
                for s in old {
                    s.close();
                }
                match make() {
                    Ok(Some(s)) => sinks.push(s),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(sink = name, error = %e, "cannot restart sink; it stays off")
                    }
                }
                continue;
            }
            Ok(HubMsg::Shutdown) | Err(_) => break,
        };
        let out = m.to_outgoing(&classes);
        for s in &sinks {
            if !s.offer(&out) {
                dropped.fetch_add(1, Ordering::Relaxed);
                let now = std::time::Instant::now();
                if warned_at.is_none_or(|w| now.duration_since(w).as_secs() >= 10) {
                    warned_at = Some(now);
                    tracing::warn!(
                        sink = s.name(),
                        dropped_total = dropped.load(Ordering::Relaxed),
                        "sink is behind; dropping lines"
                    );
                }
            }
        }
    }
    for s in sinks {
        s.close();
    }
}
