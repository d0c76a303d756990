//! The optional PIN: required, compared in constant time, slowed down after a few wrong
//! tries, and never written to the log.

mod support;

use std::time::{Duration, Instant};

use ferry::client::{ClientError, ConnectOptions, Connection};
use ferry::protocol::message::ErrorCode;
use support::*;

fn connect(addr: &str, pin: Option<&str>) -> Result<Connection, ClientError> {
    Connection::connect(addr, &ConnectOptions { pin: pin.map(str::to_string), ..Default::default() })
}

fn refused_code(r: Result<Connection, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused(e)) => e.error,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected without the right PIN"),
    }
}

#[test]
fn wrong_pins_are_unauthorized_and_slowed_down() {
    let srv = TestServer::start_with(|c| c.pin = Some("271828".into()));
    let addr = srv.addr_string();
    assert_eq!(refused_code(connect(&addr, None)), ErrorCode::Unauthorized);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(refused_code(connect(&addr, Some("000000"))), ErrorCode::Unauthorized);
        times.push(t.elapsed());
    }
    // The first three failures (including the PIN-less one) answer at once; then 250 ms, 500 ms...
    assert!(times[0] < Duration::from_millis(200), "{times:?}");
    assert!(times[3] >= Duration::from_millis(240), "{times:?}");
    assert!(times[4] >= Duration::from_millis(480), "{times:?}");
    // The right PIN still works, and resets the count for that address.
    let mut conn = connect(&addr, Some("271828")).unwrap();
    assert!(conn.list("").is_ok());
    let t = Instant::now();
    assert_eq!(refused_code(connect(&addr, Some("1"))), ErrorCode::Unauthorized);
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[test]
fn serve_shows_the_pin_once_and_never_logs_it() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f.txt"), b"f").unwrap();
    let mut serve = ServeProcess::start(share.path(), &["--pin", "918273"]);
    assert_eq!(refused_code(connect(&serve.addr, Some("111111"))), ErrorCode::Unauthorized);
    assert!(connect(&serve.addr, Some("918273")).unwrap().list("").is_ok());
    // The refusal is logged by the host's event loop, maybe after the client has its answer.
    serve.stdout.wait_for(Duration::from_secs(10), |l| l.contains("turned away"));
    let (status, lines) = serve.interrupt_and_wait();
    assert!(status.success(), "{status:?}");
    let log = lines.join("\n");
    let err = serve.stderr.until_closed(Duration::from_secs(10)).join("\n");
    assert!(!log.contains("918273"), "the PIN appears in the log: {log}");
    assert!(!log.contains("111111"), "a tried PIN appears in the log: {log}");
    assert!(log.contains("turned away") && log.contains("wrong PIN"), "{log}");
    assert_eq!(err.matches("918273").count(), 1, "shown once on the terminal: {err}");
}

#[test]
fn a_generated_pin_has_six_digits() {
    let share = tempfile::tempdir().unwrap();
    let mut serve = ServeProcess::start(share.path(), &["--pin"]);
    let line = serve.stderr.wait_for(Duration::from_secs(10), |l| l.starts_with("PIN: "));
    let pin = line.strip_prefix("PIN: ").and_then(|r| r.split(' ').next()).expect(&line);
    assert_eq!(pin.len(), 6, "{line}");
    assert!(pin.chars().all(|c| c.is_ascii_digit()), "{line}");
}
