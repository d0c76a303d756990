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

/// The sixteen colours of ferry's fingerprints (the window's checksum and identity strips),
/// far apart from each other, each with a name to read out across the room.
pub const PALETTE: [([u8; 3], &str); 16] = [
    ([230, 25, 75], "red"),
    ([60, 180, 75], "green"),
    ([255, 225, 25], "yellow"),
    ([67, 99, 216], "blue"),
    ([245, 130, 49], "orange"),
    ([145, 30, 180], "purple"),
    ([66, 212, 244], "cyan"),
    ([240, 50, 230], "magenta"),
    ([191, 239, 69], "lime"),
    ([250, 190, 212], "pink"),
    ([70, 153, 144], "teal"),
    ([220, 190, 255], "lavender"),
    ([154, 99, 36], "brown"),
    ([128, 0, 0], "maroon"),
    ([0, 0, 117], "navy"),
    ([128, 128, 0], "olive"),
];

/// A host identity's colour swatches (indices into [`PALETTE`]): sixteen, each folding two
/// bytes of the fingerprint into four bits, so any single changed bit changes one swatch.
pub fn identity_swatches(fp: &crate::transport::Fingerprint) -> [usize; 16] {
    std::array::from_fn(|i| {
        let x = fp.0[2 * i] ^ fp.0[2 * i + 1];
        usize::from((x >> 4) ^ (x & 0x0f))
    })
}

/// The identity's swatches as a strip of coloured blocks for a terminal (24-bit colour).
pub fn identity_strip(fp: &crate::transport::Fingerprint) -> String {
    identity_swatches(fp)
        .iter()
        .map(|&i| {
            let [r, g, b] = PALETTE[i].0;
            format!("\x1b[48;2;{r};{g};{b}m  \x1b[0m")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

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

    #[test]
    fn identity_swatches_change_one_at_a_time() {
        let a = crate::transport::Fingerprint([0x5a; 32]);
        let mut b = a;
        b.0[7] ^= 0x10;
        let (sa, sb) = (identity_swatches(&a), identity_swatches(&b));
        assert_eq!(sa.iter().zip(&sb).filter(|(x, y)| x != y).count(), 1);
        assert_eq!(identity_strip(&a).matches("\x1b[48;2;").count(), 16);
    }

    #[cfg(feature = "gui")]
    #[test]
    fn the_palette_is_the_windows_palette() {
        for (i, (rgb, name)) in PALETTE.iter().enumerate() {
            let (c, n) = crate::gui::verdict::PALETTE[i];
            assert_eq!((c.r(), c.g(), c.b(), n), (rgb[0], rgb[1], rgb[2], *name));
        }
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
