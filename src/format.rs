//! Numbers as people read them: sizes in KiB/MiB/GiB, speeds, time left, dates. Shared by
//! the command line and the window.

use std::time::Duration;

use indicatif::HumanBytes;

/// `1.50 MiB`, `512 B`.
pub fn size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// `12.30 MiB/s`.
pub fn speed(bytes_per_sec: f64) -> String {
    format!("{}/s", HumanBytes(bytes_per_sec.max(0.0) as u64))
}

/// Time left at the current rate: `3 min 20 s`, `12 s`; `None` while the rate is unknown.
pub fn eta(remaining: u64, bytes_per_sec: f64) -> Option<String> {
    if remaining == 0 {
        return Some("0 s".into());
    }
    if bytes_per_sec < 1.0 {
        return None;
    }
    let secs = (remaining as f64 / bytes_per_sec).ceil();
    if secs > 100.0 * 3600.0 {
        return None;
    }
    Some(duration(Duration::from_secs(secs as u64)))
}

/// `0.4 s`, `12 s`, `3 min 20 s`, `1 h 02 min`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min {} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// A listing's modification time in local time, `2024-05-01 14:03`.
pub fn modified(unix_secs: Option<i64>) -> String {
    unix_secs
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// The wall-clock time now, `14:03:12`, for lists of events.
pub fn clock_now() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// A digest's hex in four groups of eight (`d41d8cd9 8f00b204 …`), easier to compare by eye.
pub fn grouped_hex(hex: &str) -> String {
    let mut out = String::with_capacity(hex.len() + hex.len() / 8);
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && i % 8 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

pub use crate::rate::RateMeter;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.50 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.00 GiB");
        assert_eq!(speed(2.0 * 1024.0 * 1024.0), "2.00 MiB/s");
    }

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(eta(100, 0.0), None);
        assert_eq!(eta(0, 0.0).as_deref(), Some("0 s"));
        assert_eq!(eta(1000, 100.0).as_deref(), Some("10 s"));
        assert_eq!(eta(200 * 1000, 1000.0).as_deref(), Some("3 min 20 s"));
        assert_eq!(eta(3720, 1.0).as_deref(), Some("1 h 02 min"));
        assert_eq!(duration(Duration::from_millis(400)), "0.4 s");
    }

    #[test]
    fn hex_is_grouped_by_eight() {
        assert_eq!(grouped_hex("d41d8cd98f00b204e9800998ecf8427e"), "d41d8cd9 8f00b204 e9800998 ecf8427e");
    }
}

/// An I/O error in words, without the OS error number (`the disk is full`, not
/// `No space left on device (os error 28)`).
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "it does not exist".into(),
        K::PermissionDenied => "permission denied".into(),
        K::StorageFull => "the disk is full".into(),
        K::ReadOnlyFilesystem => "the disk is read-only".into(),
        K::AlreadyExists => "something of that name is already there".into(),
        K::NotADirectory => "part of the path is a file, not a folder".into(),
        _ => without_os_error(&e.to_string()),
    }
}

/// `text` with every ` (os error N)` taken out.
pub fn without_os_error(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            rest = &tail[digits + 1..];
        } else {
            out.push_str(" (os error ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod io_words_tests {
    use super::*;

    #[test]
    fn os_error_numbers_are_taken_out() {
        assert_eq!(without_os_error("Broken pipe (os error 32)"), "Broken pipe");
        assert_eq!(without_os_error("a (os error 2) b (os error 13)!"), "a b!");
        assert_eq!(without_os_error("odd (os error x)"), "odd (os error x)");
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_words(&e), "it does not exist");
        let e = std::io::Error::other("weird (os error 5)");
        assert_eq!(io_words(&e), "weird");
    }
}
