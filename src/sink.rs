//! Where the engine sends its events: a crossbeam channel plus an optional wake-up callback
//! (the desktop window passes `ctx.request_repaint`), so the engine never depends on a front.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

/// Called after every event is sent (for example to wake a GUI's event loop).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// The sending half of an event stream.
pub struct Sink<E> {
    tx: Sender<E>,
    notify: Option<Notify>,
}

impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink { tx: self.tx.clone(), notify: self.notify.clone() }
    }
}

impl<E> Sink<E> {
    /// A new unbounded event stream: the sink for the engine and the receiver for the front.
    /// Progress events are rate-limited at the source, so the queue stays short while a front
    /// drains it; a front that has gone away is simply not told any more.
    pub fn new(notify: Option<Notify>) -> (Sink<E>, Receiver<E>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Sink { tx, notify }, rx)
    }

    /// Sends an event; a dropped receiver is not an error for the engine.
    pub fn send(&self, event: E) {
        let _ = self.tx.send(event);
        if let Some(notify) = &self.notify {
            notify();
        }
    }
}
