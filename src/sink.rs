//! Where the engine sends its events: a crossbeam channel plus an optional wake-up callback
//! (the desktop window passes `ctx.request_repaint`), so the engine never depends on a front,
//! and a front that falls behind (a minimised window, a slow terminal) cannot make the engine's
//! memory grow.
//!
//! Each event says how it may be treated when the queue is long ([`Delivery`]); past half the
//! queue's limit:
//! - **progress** ([`Delivery::Coalesce`]) is dropped silently: a later one says more;
//! - **routine events and starts** ([`Delivery::Droppable`]: a refused request, a turned-away
//!   client, a new connection or transfer) are dropped and counted; the count is reported (by
//!   the event [`Policy::dropped`] makes) as soon as there is room, and always before the next
//!   essential event. [`Sink::offer`] says whether an event was queued: the engine does not
//!   report the progress or the end of a connection or transfer whose start it did not report;
//! - **essential events** ([`Delivery::Essential`]: the end of a reported connection or
//!   transfer, every terminal event) are always queued, and the sender never waits. They stay
//!   bounded all the same: each belongs to a start that was queued while the queue was short,
//!   and only as many starts are open at once as there are connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

/// Called after every event is sent (for example to wake a GUI's event loop).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Past half this many queued events, what may be dropped is dropped.
pub const DEFAULT_QUEUE: usize = 2048;

/// How an event may be treated when the front falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Superseded by a later event of its kind (progress): dropped silently when the queue is
    /// long.
    Coalesce,
    /// Routine, or the start of something (a refused request, a new connection): dropped when
    /// the queue is long, counted, and the count reported later.
    Droppable,
    /// Never dropped (the end of something reported, terminal events).
    Essential,
}

/// How a stream treats its events: which may be dropped, and how a count of dropped ones is
/// reported.
pub struct Policy<E> {
    /// Past half this many queued events, what may be dropped is dropped.
    pub limit: usize,
    pub delivery: fn(&E) -> Delivery,
    /// The event that reports `count` dropped [`Delivery::Droppable`] events, if any.
    pub dropped: fn(u64) -> Option<E>,
}

impl<E> Policy<E> {
    /// Every event essential: for streams whose events the front asks for, one by one.
    pub fn all_essential() -> Policy<E> {
        Policy { limit: DEFAULT_QUEUE, delivery: |_| Delivery::Essential, dropped: |_| None }
    }
}

struct State {
    dropped: AtomicU64,
}

/// The sending half of an event stream.
pub struct Sink<E> {
    tx: Sender<E>,
    limit: usize,
    delivery: fn(&E) -> Delivery,
    dropped: fn(u64) -> Option<E>,
    notify: Option<Notify>,
    state: Arc<State>,
}

impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink {
            tx: self.tx.clone(),
            limit: self.limit,
            delivery: self.delivery,
            dropped: self.dropped,
            notify: self.notify.clone(),
            state: self.state.clone(),
        }
    }
}

impl<E> Sink<E> {
    /// A new event stream whose events are all essential ([`Policy::all_essential`]).
    pub fn new(notify: Option<Notify>) -> (Sink<E>, Receiver<E>) {
        Self::with_policy(Policy::all_essential(), notify)
    }

    /// A new event stream: the sink for the engine and the receiver for the front.
    pub fn with_policy(policy: Policy<E>, notify: Option<Notify>) -> (Sink<E>, Receiver<E>) {
        // Unbounded as a channel (nothing is allocated ahead); bounded by `send`.
        let (tx, rx) = crossbeam_channel::unbounded();
        let state = Arc::new(State { dropped: AtomicU64::new(0) });
        let limit = policy.limit.max(2);
        (Sink { tx, limit, delivery: policy.delivery, dropped: policy.dropped, notify, state }, rx)
    }

    /// Sends an event as its [`Delivery`] allows (a dropped receiver is not an error for the
    /// engine).
    pub fn send(&self, event: E) {
        self.offer(event);
    }

    /// [`Sink::send`], saying whether the event was queued (for a start: whether to report
    /// what follows it).
    pub fn offer(&self, event: E) -> bool {
        let short = self.tx.len() < self.limit / 2;
        match (self.delivery)(&event) {
            Delivery::Coalesce if !short => false,
            Delivery::Droppable if !short => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            delivery => {
                self.report_dropped(delivery == Delivery::Essential || short);
                self.push(event);
                true
            }
        }
    }

    /// Reports the count of dropped events, if any and if `now`.
    fn report_dropped(&self, now: bool) {
        if !now || self.state.dropped.load(Ordering::Relaxed) == 0 {
            return;
        }
        let count = self.state.dropped.swap(0, Ordering::Relaxed);
        if count > 0
            && let Some(report) = (self.dropped)(count)
        {
            self.push(report);
        }
    }

    fn push(&self, event: E) {
        if self.tx.send(event).is_ok()
            && let Some(notify) = &self.notify
        {
            notify();
        }
    }
}

/// Unit tests ask for this name to make the engine thread that handles it panic, to show the
/// job or connection still ends in exactly one terminal event and frees what it held.
#[cfg(test)]
pub(crate) const INJECTED_PANIC: &str = "panic-injected-by-a-test";

#[cfg(test)]
pub(crate) fn panic_if_injected(name: &str) {
    if name.ends_with(INJECTED_PANIC) {
        panic!("{INJECTED_PANIC}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Progress(u32),
        Refused(u32),
        Dropped(u64),
        End(u32),
    }

    fn sink(limit: usize) -> (Sink<Ev>, Receiver<Ev>) {
        let delivery = |e: &Ev| match e {
            Ev::Progress(_) => Delivery::Coalesce,
            Ev::Refused(_) => Delivery::Droppable,
            Ev::Dropped(_) | Ev::End(_) => Delivery::Essential,
        };
        Sink::with_policy(Policy { limit, delivery, dropped: |n| Some(Ev::Dropped(n)) }, None)
    }

    #[test]
    fn past_half_the_queue_progress_is_dropped_and_refusals_are_counted() {
        let (sink, rx) = sink(8);
        for n in 0..100 {
            sink.send(Ev::Progress(n));
            sink.send(Ev::Refused(n));
        }
        assert_eq!(rx.len(), 4);
        // An essential event goes through, after the count of what was dropped.
        sink.send(Ev::End(1));
        let got: Vec<Ev> = rx.try_iter().collect();
        assert_eq!(got[..4], [Ev::Progress(0), Ev::Refused(0), Ev::Progress(1), Ev::Refused(1)]);
        assert_eq!(got[4..], [Ev::Dropped(98), Ev::End(1)]);
    }

    #[test]
    fn essential_events_always_go_in_and_never_wait() {
        let (sink, rx) = sink(4);
        for n in 0..10 {
            assert!(sink.offer(Ev::End(n)));
        }
        assert_eq!(rx.len(), 10);
        // Past half the limit, a refusal is counted instead, and reported before the next end.
        assert!(!sink.offer(Ev::Refused(0)));
        sink.send(Ev::End(10));
        let got: Vec<Ev> = rx.try_iter().skip(10).collect();
        assert_eq!(got, [Ev::Dropped(1), Ev::End(10)]);
    }
}
