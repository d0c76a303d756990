//! Cancelling a client job from any thread, at any moment, even while it waits on the network.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    stream: Mutex<Option<TcpStream>>,
}

/// A cheap, cloneable handle: [`CancelToken::cancel`] sets a flag the job checks between chunks
/// and shuts down the job's socket, so a read blocked on a silent server returns at once.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Inner>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        if let Some(s) = self.0.stream.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Registers the socket to shut down on cancel (and shuts it at once if already cancelled).
    pub(crate) fn attach(&self, stream: &TcpStream) {
        let Ok(clone) = stream.try_clone() else { return };
        *self.0.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
        if self.is_cancelled() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}
