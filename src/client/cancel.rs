//! Cancelling a client job from any thread, at any moment, even while it waits on the network.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::Stream;
use crate::transport::sliced::{read_in_slices, slice_reads};

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

/// A connection's read half, read in slices ([`crate::transport::sliced`]) that look at the
/// job's cancel flag: shutting the socket down (what [`CancelToken::cancel`] does) does not
/// wake a blocked read on Windows. A read waits until the whole `idle` time passed without a
/// byte (then `TimedOut`) or the job is cancelled (then `ConnectionAborted`).
pub(crate) struct Watched {
    pub(crate) stream: Stream,
    cancel: Option<CancelToken>,
    /// How long a read waits for the host's next byte.
    pub(crate) idle: Duration,
}

impl Watched {
    /// Sets the socket's read timeout to the slice: the socket must not be read elsewhere with
    /// the expectation of a longer one.
    pub(crate) fn new(stream: Stream, idle: Duration) -> io::Result<Watched> {
        slice_reads(&stream, idle)?;
        Ok(Watched { stream, cancel: None, idle })
    }

    /// Watches `cancel` from now on, and shuts the socket down when it fires.
    pub(crate) fn watch(&mut self, cancel: &CancelToken) {
        cancel.attach(self.stream.tcp());
        self.cancel = Some(cancel.clone());
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Watched { stream, cancel, idle } = self;
        let cancelled = || cancel.as_ref().is_some_and(CancelToken::is_cancelled);
        match read_in_slices(stream, buf, *idle, cancelled) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) && cancelled() => {
                Err(io::Error::new(io::ErrorKind::ConnectionAborted, "cancelled"))
            }
            other => other,
        }
    }
}

impl Write for Watched {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::Instant;

    /// A connected pair: the client end, and the host end kept open and silent.
    fn silent_host() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (host, _) = listener.accept().unwrap();
        (client, host)
    }

    #[test]
    fn a_read_waiting_on_a_silent_host_ends_soon_after_a_cancel_even_without_the_shutdown() {
        let (client, _host) = silent_host();
        let mut watched = Watched::new(Stream::Plain(client), Duration::from_secs(60)).unwrap();
        // The token is watched but the socket is not attached to it: as on Windows, nothing
        // but the slices can notice the cancel.
        let cancel = CancelToken::new();
        watched.cancel = Some(cancel.clone());
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(()).unwrap();
            let result = watched.read(&mut [0u8; 16]);
            (result.map_err(|e| e.kind()), Instant::now())
        });
        rx.recv().unwrap();
        cancel.cancel();
        let cancelled_at = Instant::now();
        let (result, ended) = reader.join().unwrap();
        assert_eq!(result, Err(io::ErrorKind::ConnectionAborted));
        assert!(ended.duration_since(cancelled_at) < Duration::from_secs(2), "{:?}", ended - cancelled_at);
    }

    #[test]
    fn without_a_cancel_a_read_waits_the_whole_idle_time_then_times_out() {
        let (client, mut host) = silent_host();
        let mut watched = Watched::new(Stream::Plain(client), Duration::from_millis(450)).unwrap();
        watched.watch(&CancelToken::new());
        let started = Instant::now();
        let err = watched.read(&mut [0u8; 16]).unwrap_err();
        assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
        // Bytes that arrive later are read whole: the slices lost nothing.
        host.write_all(b"after the wait").unwrap();
        let mut got = [0u8; 14];
        watched.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"after the wait");
    }
}
