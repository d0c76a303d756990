//! ferry: move files between two machines on a network and prove they arrived intact.
//!
//! - [`protocol`]: the wire format (frames, control messages, the data section), pure code.
//! - [`server`] and [`client`]: the engine; threads, sockets and files, reporting events on
//!   crossbeam channels.
//! - [`transport`]: what a connection runs over: TLS 1.3 with the host's identity, pinning and
//!   the PIN as a PAKE, or plain TCP on request.
//! - [`cli`]: the headless command line; `gui` (the default `gui` feature): the desktop window.

pub mod cli;
pub mod client;
pub mod discovery;
pub mod format;
#[cfg(feature = "gui")]
pub mod gui;
pub mod net;
pub mod pipeline;
pub mod protocol;
pub mod rate;
pub mod server;
pub mod sink;
pub mod transport;
