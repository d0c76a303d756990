//! The optional PIN: required, compared in constant time, limited after a few wrong tries, and
//! never written to the log.

mod support;

use std::time::{Duration, Instant};

use ferry::client::{ClientError, ConnectOptions, Connection};
use ferry::protocol::message::ErrorCode;
use support::*;

fn connect(addr: &str, pin: Option<&str>) -> Result<Connection, ClientError> {
    Connection::connect(addr, &ConnectOptions { pin: pin.map(Into::into), ..Default::default() })
}

#[cfg(unix)] // only the Ctrl-C test below reads a bare code
fn refused_code(r: Result<Connection, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused(e)) => e.error,
        // Inside TLS the client finds a wrong PIN itself, from the host's confirmation of the
        // PIN exchange, and stops: the host counts that as a wrong PIN.
        Err(ClientError::WrongPin) => ErrorCode::Unauthorized,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected without the right PIN"),
    }
}

fn refusal(r: Result<Connection, ClientError>) -> String {
    match r {
        Err(ClientError::Refused(e)) if e.error == ErrorCode::Unauthorized => e.message,
        // Inside TLS the client finds a wrong PIN itself, from the host's confirmation of the
        // PIN exchange, and stops: the host counts that as a wrong PIN.
        Err(ClientError::WrongPin) => "wrong PIN".to_string(),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected without the right PIN"),
    }
}

#[test]
fn after_three_wrong_pins_an_address_must_wait_even_with_the_right_one() {
    let srv = TestServer::start_with(|c| c.pin = Some("271828".into()));
    let addr = srv.addr_string();
    // Hellos without a PIN (a first connect, the Nearby list's probes) guess nothing and cost
    // no attempt: told a PIN is needed, however many there are.
    for _ in 0..5 {
        let message = refusal(connect(&addr, None));
        assert_eq!(message, "this server needs a PIN");
    }
    assert_eq!(refusal(connect(&addr, Some("000000"))), "wrong PIN");
    assert_eq!(refusal(connect(&addr, Some("000003"))), "wrong PIN");
    let third = Instant::now();
    assert_eq!(refusal(connect(&addr, Some("000001"))), "wrong PIN");
    // Now this address must wait: its next PINs, even the right one, are not looked at.
    for pin in ["000002", "271828"] {
        let message = refusal(connect(&addr, Some(pin)));
        assert!(message.starts_with("too many wrong PINs"), "{message}");
    }
    // Once the wait (1 s) is over, the right PIN gets in, and the count starts again.
    // The wait ends with no event to wait on: poll (bounded); refused tries do not extend it.
    let mut last = None;
    let got_in = wait_until(Duration::from_secs(5), || {
        last = Some(connect(&addr, Some("271828")));
        matches!(last, Some(Ok(_)))
    });
    let mut conn = match last {
        Some(Ok(conn)) if got_in => conn,
        other => panic!("still refused after 5 s: {:?}", other.and_then(Result::err)),
    };
    assert!(third.elapsed() >= Duration::from_millis(900), "the wait was only {:?}", third.elapsed());
    assert!(conn.list("").is_ok());
    assert_eq!(refusal(connect(&addr, Some("1"))), "wrong PIN");
}

#[cfg(unix)] // Ctrl-C as SIGINT, to read the whole log
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
