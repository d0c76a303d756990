//! ferry: move files between two machines on a network and prove they arrived intact.
//!
//! - [`protocol`]: the wire format (frames, control messages, the data section), pure code.
//! - [`server`] and [`client`]: the engine; threads, sockets and files, reporting events on
//!   crossbeam channels.
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
