//! The lock-free SPSC ring between a capture callback and the thread that reads it.
//!
//! [`ring`] makes a fixed-capacity `ringbuf` ring of mono `f32` samples and splits it
//! into a [`RingProducer`] (owned by the cpal callback) and a [`RingConsumer`] (owned by
//! the source reader). The producer never waits: what does not fit is dropped and
//! counted in [`SourceCounters::samples_dropped`]. Every push also stamps a
//! [`Heartbeat`], so a watchdog can tell when callbacks stop arriving. The consumer can
//! stop the producer ([`RingConsumer::stop_producer`]): from then on pushes are ignored
//! (not counted), which makes the counters final even if the device keeps calling back.
//!
//! Nothing on the producer side allocates, locks, logs or blocks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::{downmix_to_mono, AudioError, SourceCounters};

/// Frames converted per step on the producer side: the stack scratch size.
const SCRATCH_FRAMES: usize = 256;

/// When the producer last ran: a monotonic clock readable from any thread.
#[derive(Debug)]
pub struct Heartbeat {
    /// The clock's zero.
    base: Instant,
    /// Nanoseconds since `base` of the last beat, plus one; 0 = never.
    last_ns: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat that has not beaten yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
        })
    }

    /// Records a beat now (lock-free; a `clock_gettime` and an atomic store).
    pub fn beat(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_ns.store(ns.saturating_add(1), Ordering::Relaxed);
    }

    /// The instant of the last beat, or `None` if there was none.
    pub fn last(&self) -> Option<Instant> {
        match self.last_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        }
    }

    /// Time since the last beat, or `None` if there was none.
    pub fn since_last(&self) -> Option<Duration> {
        self.last().map(|t| t.elapsed())
    }
}

/// Lets the consumer stop the producer and know when no push is in flight.
#[derive(Debug, Default)]
struct Gate {
    /// Set by the consumer: pushes are ignored from now on.
    stopped: AtomicBool,
    /// Set by the producer while a push is in flight.
    busy: AtomicBool,
}

/// The producer end, used by the capture callback. Never blocks, allocates or logs.
pub struct RingProducer {
    /// Shared with the consumer, to be stopped.
    gate: Arc<Gate>,
    /// The ring's write end.
    prod: HeapProd<f32>,
    /// Counters shared with the reader: `samples_in`, `samples_dropped`, `samples_nonfinite`.
    counters: Arc<SourceCounters>,
    /// Stamped on every push.
    heartbeat: Arc<Heartbeat>,
}

/// The consumer end, used by the source reader.
pub struct RingConsumer {
    /// The ring's read end.
    cons: HeapCons<f32>,
    /// Shared with the producer, to stop it.
    gate: Arc<Gate>,
}

/// Makes a ring of `capacity` mono samples (≥ 1) and splits it. `counters` is where the
/// producer counts what it receives and drops; the returned [`Heartbeat`] is stamped on
/// every push.
pub fn ring(
    capacity: usize,
    counters: Arc<SourceCounters>,
) -> Result<(RingProducer, RingConsumer, Arc<Heartbeat>), AudioError> {
    let rb = HeapRb::<f32>::try_new(capacity).map_err(|e| AudioError::Device {
        device: "ring".into(),
        reason: format!("cannot allocate a ring of {capacity} samples (expected 1 or more): {e}"),
    })?;
    let (prod, cons) = rb.split();
    let heartbeat = Heartbeat::new();
    let gate = Arc::new(Gate::default());
    Ok((
        RingProducer {
            gate: gate.clone(),
            prod,
            counters,
            heartbeat: heartbeat.clone(),
        },
        RingConsumer { cons, gate },
        heartbeat,
    ))
}

impl RingProducer {
    /// Pushes mono samples. Returns how many fit; the rest are counted as dropped.
    /// After [`RingConsumer::stop_producer`], does nothing and returns 0.
    pub fn push(&mut self, samples: &[f32]) -> usize {
        if !self.enter() {
            return 0;
        }
        self.heartbeat.beat();
        self.counters
            .samples_in
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        let n = self.push_counted(samples);
        self.gate.busy.store(false, Ordering::SeqCst);
        n
    }

    /// Marks a push in flight unless stopped; `false` if stopped.
    fn enter(&self) -> bool {
        self.gate.busy.store(true, Ordering::SeqCst);
        if self.gate.stopped.load(Ordering::SeqCst) {
            self.gate.busy.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Converts interleaved frames of `channels` channels to mono (mean of the channels,
    /// non-finite values zeroed and counted) through a stack scratch and pushes them.
    /// Returns how many mono samples fit; the rest are counted as dropped. After
    /// [`RingConsumer::stop_producer`], does nothing and returns 0.
    pub fn push_interleaved<T: Copy>(
        &mut self,
        interleaved: &[T],
        channels: usize,
        to_f32: impl Fn(T) -> f32 + Copy,
    ) -> usize {
        if !self.enter() {
            return 0;
        }
        self.heartbeat.beat();
        let channels = channels.max(1);
        let frames = interleaved.len() / channels;
        self.counters
            .samples_in
            .fetch_add(frames as u64, Ordering::Relaxed);
        let mut scratch = [0.0f32; SCRATCH_FRAMES];
        let mut pushed = 0;
        let mut nonfinite = 0;
        for block in interleaved[..frames * channels].chunks(SCRATCH_FRAMES * channels) {
            let n = block.len() / channels;
            nonfinite += downmix_to_mono(block, channels, to_f32, &mut scratch[..n]);
            pushed += self.push_counted(&scratch[..n]);
        }
        if nonfinite > 0 {
            self.counters
                .samples_nonfinite
                .fetch_add(nonfinite, Ordering::Relaxed);
        }
        self.gate.busy.store(false, Ordering::SeqCst);
        pushed
    }

    /// Free space, in samples.
    pub fn vacant(&self) -> usize {
        self.prod.vacant_len()
    }

    fn push_counted(&mut self, samples: &[f32]) -> usize {
        let n = self.prod.push_slice(samples);
        if n < samples.len() {
            self.counters
                .samples_dropped
                .fetch_add((samples.len() - n) as u64, Ordering::Relaxed);
        }
        n
    }
}

impl RingConsumer {
    /// Pops up to `buf.len()` samples into the start of `buf`; returns how many.
    pub fn pop(&mut self, buf: &mut [f32]) -> usize {
        self.cons.pop_slice(buf)
    }

    /// Samples waiting in the ring.
    pub fn available(&self) -> usize {
        self.cons.occupied_len()
    }

    /// Capacity of the ring, in samples.
    pub fn capacity(&self) -> usize {
        self.cons.capacity().get()
    }

    /// Stops the producer: later pushes are ignored and not counted. Waits up to `wait`
    /// for a push in flight to finish; returns whether none is in flight any more (then
    /// the counters are final).
    pub fn stop_producer(&self, wait: Duration) -> bool {
        self.gate.stopped.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + wait;
        while self.gate.busy.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// Whether [`RingConsumer::stop_producer`] was called.
    pub fn producer_stopped(&self) -> bool {
        self.gate.stopped.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7)
    }

    #[test]
    fn overflow_is_dropped_and_counted_never_waited_on() {
        let counters = SourceCounters::new();
        let (mut p, mut c, hb) = ring(4, counters.clone()).unwrap();
        assert!(hb.last().is_none());
        assert_eq!(p.push(&[1.0, 2.0, 3.0]), 3);
        assert_eq!(p.push(&[4.0, 5.0, 6.0]), 1);
        assert!(hb.since_last().is_some());
        assert_eq!(SourceCounters::get(&counters.samples_in), 6);
        assert_eq!(SourceCounters::get(&counters.samples_dropped), 2);
        assert_eq!(c.available(), 4);
        let mut buf = [0.0f32; 8];
        assert_eq!(c.pop(&mut buf), 4);
        assert!(close(&buf[..4], &[1.0, 2.0, 3.0, 4.0]));
        assert_eq!(c.pop(&mut buf), 0);
        assert_eq!(c.capacity(), 4);
    }

    #[test]
    fn interleaved_frames_are_averaged_across_scratch_blocks() {
        let counters = SourceCounters::new();
        let (mut p, mut c, _) = ring(10_000, counters.clone()).unwrap();
        // 1000 stereo frames (more than one scratch block): left = i, right = -i/2.
        let data: Vec<i16> = (0..1000i16).flat_map(|i| [i, -i / 2]).collect();
        assert_eq!(p.push_interleaved(&data, 2, f32::from), 1000);
        let mut out = vec![0.0f32; 2000];
        assert_eq!(c.pop(&mut out), 1000);
        let want: Vec<f32> = (0..1000i16)
            .map(|i| (f32::from(i) + f32::from(-i / 2)) / 2.0)
            .collect();
        assert!(close(&out[..1000], &want));
        assert_eq!(SourceCounters::get(&counters.samples_in), 1000);
    }

    #[test]
    fn nonfinite_values_are_zeroed_and_counted_in_the_producer() {
        let counters = SourceCounters::new();
        let (mut p, mut c, _) = ring(8, counters.clone()).unwrap();
        p.push_interleaved(&[0.5f32, f32::NAN, f32::NEG_INFINITY, 0.25], 1, |v| v);
        let mut out = [9.0f32; 4];
        assert_eq!(c.pop(&mut out), 4);
        assert!(close(&out, &[0.5, 0.0, 0.0, 0.25]));
        assert_eq!(SourceCounters::get(&counters.samples_nonfinite), 2);
    }

    #[test]
    fn a_stopped_producer_pushes_and_counts_nothing() {
        let counters = SourceCounters::new();
        let (mut p, mut c, _) = ring(8, counters.clone()).unwrap();
        assert_eq!(p.push(&[1.0, 2.0]), 2);
        assert!(!c.producer_stopped());
        assert!(c.stop_producer(Duration::from_millis(10)));
        assert!(c.producer_stopped());
        assert_eq!(p.push(&[3.0]), 0);
        assert_eq!(p.push_interleaved(&[1i16, 2], 2, f32::from), 0);
        assert_eq!(SourceCounters::get(&counters.samples_in), 2);
        let mut buf = [0.0f32; 8];
        assert_eq!(c.pop(&mut buf), 2);
    }

    #[test]
    fn zero_capacity_is_an_error_not_a_panic() {
        let e = ring(0, SourceCounters::new()).err().unwrap();
        assert!(e.to_string().contains("expected 1 or more"), "{e}");
    }
}
