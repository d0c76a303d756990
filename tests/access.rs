//! The optional PIN: required, compared in constant time, slowed down after a few wrong
//! tries, and never written to the log.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", share.path().to_str().unwrap(), "--bind", "127.0.0.1:0", "--pin", "918273"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).unwrap();
    let addr = first.split(" at ").nth(1).and_then(|r| r.split(' ').next()).expect(&first).to_string();
    assert_eq!(refused_code(connect(&addr, Some("111111"))), ErrorCode::Unauthorized);
    assert!(connect(&addr, Some("918273")).unwrap().list("").is_ok());
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut log = first.clone();
    stdout.read_to_string(&mut log).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    child.wait().unwrap();
    assert!(!log.contains("918273"), "the PIN appears in the log: {log}");
    assert!(!log.contains("111111"), "a tried PIN appears in the log: {log}");
    assert!(log.contains("turned away") && log.contains("wrong PIN"), "{log}");
    assert_eq!(err.matches("918273").count(), 1, "shown once on the terminal: {err}");
}

#[test]
fn a_generated_pin_has_six_digits() {
    let share = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", share.path().to_str().unwrap(), "--bind", "127.0.0.1:0", "--pin"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stderr.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let line = String::from_utf8(line).unwrap();
    let pin = line.strip_prefix("PIN: ").and_then(|r| r.split(' ').next()).expect(&line);
    assert_eq!(pin.len(), 6, "{line}");
    assert!(pin.chars().all(|c| c.is_ascii_digit()), "{line}");
}
