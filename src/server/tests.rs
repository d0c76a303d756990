//! A connection whose thread panics still ends cleanly: one `TransferFailed`, one
//! `ClientDisconnected`, and its slot is free for the next client.

use std::time::Duration;

use super::{Server, ServerConfig, ServerEvent};
use crate::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest};
use crate::sink::INJECTED_PANIC;

#[test]
fn a_panicking_connection_ends_once_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(INJECTED_PANIC), b"boom").unwrap();
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0");
    config.max_clients = 1;
    let (server, events) = Server::spawn(config, None);
    let addr = loop {
        if let ServerEvent::Listening { addr, .. } = events.recv_timeout(Duration::from_secs(10)).unwrap() {
            break addr.to_string();
        }
    };
    let out = tempfile::tempdir().unwrap();
    let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: INJECTED_PANIC.into(), dest: out.path().join("x"), overwrite: false };
    let result = conn.download(&req, &CancelToken::new(), &mut |_| {});
    assert!(matches!(result, Err(ClientError::Lost(_) | ClientError::Incomplete(_))), "{result:?}");

    let mut seen = Vec::new();
    loop {
        let event = events.recv_timeout(Duration::from_secs(10)).expect("the connection's last event");
        let last = matches!(event, ServerEvent::ClientDisconnected { .. });
        seen.push(event);
        if last {
            break;
        }
    }
    let failed: Vec<_> = seen.iter().filter(|e| matches!(e, ServerEvent::TransferFailed { .. })).collect();
    assert_eq!(failed.len(), 1, "{seen:?}");
    assert!(matches!(failed[0], ServerEvent::TransferFailed { error, .. } if error.contains("panicked")));
    assert!(
        matches!(seen.last(), Some(ServerEvent::ClientDisconnected { reason: Some(r), .. }) if r.contains("panicked")),
        "{seen:?}"
    );
    // The only slot is free again.
    let mut next = Connection::connect(&addr, &ConnectOptions::default()).expect("the slot was freed");
    assert_eq!(next.list("").unwrap().entries.len(), 1);
    drop(next);
    server.stop_and_join();
    let rest: Vec<_> = events.try_iter().collect();
    assert!(!rest.iter().any(|e| matches!(e, ServerEvent::TransferFailed { .. })), "{rest:?}");
    assert!(matches!(rest.last(), Some(ServerEvent::Stopped)), "{rest:?}");
}

#[test]
fn a_panicking_upload_ends_in_one_failure_and_leaves_nothing_under_the_name() {
    use crate::client::UploadRequest;
    let (dir, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = src.path().join("x");
    std::fs::write(&local, b"boom").unwrap();
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0");
    config.allow_upload = true;
    let (server, events) = Server::spawn(config, None);
    let addr = loop {
        if let ServerEvent::Listening { addr, .. } = events.recv_timeout(Duration::from_secs(10)).unwrap() {
            break addr.to_string();
        }
    };
    let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
    let req = UploadRequest { local, path: INJECTED_PANIC.into(), mkdirs: false };
    let result = conn.upload(&req, &CancelToken::new(), &mut |_| {});
    assert!(matches!(result, Err(ClientError::Lost(_))), "{result:?}");
    let mut seen = Vec::new();
    loop {
        let event = events.recv_timeout(Duration::from_secs(10)).expect("the connection's last event");
        let last = matches!(event, ServerEvent::ClientDisconnected { .. });
        seen.push(event);
        if last {
            break;
        }
    }
    let ends: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e, ServerEvent::TransferFailed { .. } | ServerEvent::UploadFinished { .. }))
        .collect();
    assert_eq!(ends.len(), 1, "{seen:?}");
    assert!(matches!(ends[0], ServerEvent::TransferFailed { error, .. } if error.contains("panicked")));
    assert!(!dir.path().join(INJECTED_PANIC).exists());
    server.stop_and_join();
}
