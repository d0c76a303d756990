//! Names that are legal on one system and not on another. Pure rules, no file system: every
//! rule set can be checked (and tested) from any system.
//!
//! A host lists names its own disk accepts; the client's disk may not. `a:b`, `CON`,
//! `aux.txt`, `report.` or `what?` are ordinary names on Linux, and on Windows they are
//! refused, silently changed (trailing dots and spaces are dropped), or something else entirely
//! (`CON` is the console, `a:b` is stream `b` of file `a`). Windows and macOS also see `Readme`
//! and `README` as one name.
//!
//! [`check`] says whether a name can be saved as it is under a rule set; [`adjust`] gives the
//! nearest name that can (each offending character becomes `_`, a device name gets `_` after
//! its stem, trailing dots and spaces become `_`), or `None` when nothing sensible can;
//! [`fold`] is the key under which two names are one file.
//!
//! ```
//! use ferry::protocol::names::{Os, adjust, check};
//!
//! assert!(check("aux.txt", Os::Linux).is_ok());
//! assert!(check("aux.txt", Os::Windows).is_err());
//! assert_eq!(adjust("aux.txt", Os::Windows).as_deref(), Some("aux_.txt"));
//! assert_eq!(adjust("a:b?.txt", Os::Windows).as_deref(), Some("a_b_.txt"));
//! ```

use std::fmt;

/// A rule set: the system a name must be valid on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Windows,
    #[serde(rename = "macos")]
    MacOs,
    Linux,
}

impl Os {
    /// The system this program runs on (other Unix systems follow Linux's rules).
    pub const fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_vendor = "apple") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }

    /// Whether names that differ only in case are one file there (by default).
    pub const fn case_insensitive(self) -> bool {
        matches!(self, Os::Windows | Os::MacOs)
    }

    pub const fn label(self) -> &'static str {
        match self {
            Os::Windows => "Windows",
            Os::MacOs => "macOS",
            Os::Linux => "Linux",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The longest name, in bytes of UTF-8 (Linux, macOS) or UTF-16 units (Windows).
pub const MAX_NAME: usize = 255;

/// Characters Windows refuses in a name, besides control characters.
pub const WINDOWS_FORBIDDEN: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*'];

/// Why a name cannot be saved as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("the name is empty")]
    Empty,
    #[error("\".\" and \"..\" are not file names")]
    Dots,
    #[error("{os} does not allow {0:?} in a name", os = .1)]
    Character(char, Os),
    #[error("the name contains a control character")]
    Control,
    #[error("{0:?} is a device name on Windows (the console, a port or a printer)")]
    Device(String),
    #[error("Windows drops dots and spaces at the end of a name")]
    TrailingDotOrSpace,
    #[error("the name is longer than {MAX_NAME} on {0}")]
    TooLong(Os),
}

/// Checks that `name` (one component, no separators) can be saved as it is under `os`'s rules.
pub fn check(name: &str, os: Os) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameProblem::Dots);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::Control);
    }
    match os {
        Os::Windows => {
            if let Some(c) = name.chars().find(|c| WINDOWS_FORBIDDEN.contains(c)) {
                return Err(NameProblem::Character(c, os));
            }
            if let Some(stem) = device_stem(name) {
                return Err(NameProblem::Device(stem.to_string()));
            }
            if name.ends_with(['.', ' ']) {
                return Err(NameProblem::TrailingDotOrSpace);
            }
            if name.encode_utf16().count() > MAX_NAME {
                return Err(NameProblem::TooLong(os));
            }
        }
        Os::MacOs | Os::Linux => {
            if let Some(c) = name.chars().find(|&c| c == '/' || c == '\0') {
                return Err(NameProblem::Character(c, os));
            }
            if name.len() > MAX_NAME {
                return Err(NameProblem::TooLong(os));
            }
        }
    }
    Ok(())
}

/// Device names Windows reserves in every folder, with or without an extension.
const DEVICES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// The reserved stem of `name` if Windows takes it for a device: `CON`, `aux.txt`,
/// `com1.tar.gz`, `LPT9`, `nul .txt` (the stem is what comes before the first dot, less
/// trailing spaces; case does not matter).
pub fn device_stem(name: &str) -> Option<&str> {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    let numbered = |prefix: &str| {
        upper.strip_prefix(prefix).is_some_and(|n| {
            let mut chars = n.chars();
            matches!((chars.next(), chars.next()), (Some('0'..='9' | '¹' | '²' | '³'), None))
        })
    };
    (DEVICES.contains(&upper.as_str()) || numbered("COM") || numbered("LPT")).then_some(stem)
}

/// Whether a name reaches something other than the file or folder it says on Windows: a
/// device (`CON`, `aux.txt`), an alternate data stream (`file:stream`), or another name
/// (`a.txt.` and `a.txt ` open `a.txt`). A host on Windows refuses such path components.
pub fn windows_special(name: &str) -> bool {
    name.contains(':') || device_stem(name).is_some() || name.ends_with(['.', ' '])
}

/// The nearest name to `name` that [`check`] accepts under `os`, or `None` when there is no
/// sensible one (empty, `.` or `..`, control characters, or too long). A name that is already
/// fine comes back unchanged.
pub fn adjust(name: &str, os: Os) -> Option<String> {
    match check(name, os) {
        Ok(()) => return Some(name.to_string()),
        Err(NameProblem::Empty | NameProblem::Dots | NameProblem::Control | NameProblem::TooLong(_)) => return None,
        Err(_) => {}
    }
    let forbidden = |c: char| match os {
        Os::Windows => WINDOWS_FORBIDDEN.contains(&c),
        Os::MacOs | Os::Linux => c == '/' || c == '\0',
    };
    let mut out: String = name.chars().map(|c| if forbidden(c) { '_' } else { c }).collect();
    if os == Os::Windows {
        // Trailing dots and spaces would be dropped: keep them visible as '_'.
        let kept = out.trim_end_matches(['.', ' ']).len();
        let cut = out.len() - kept;
        out.truncate(kept);
        out.extend(std::iter::repeat_n('_', cut));
        if let Some(stem) = device_stem(&out) {
            let at = stem.len();
            out.insert(at, '_');
        }
    }
    check(&out, os).is_ok().then_some(out)
}

/// The key under which names are one file under `os`: lower case where case does not matter.
/// (macOS also treats differently normalised Unicode as one name; that is not folded here.)
pub fn fold(name: &str, os: Os) -> String {
    if os.case_insensitive() { name.to_lowercase() } else { name.to_string() }
}

/// Groups of names (by index) that would be one file under `os`, such as `Readme` and
/// `README` on Windows; names alone in their group are left out.
pub fn collisions<'a>(names: impl IntoIterator<Item = &'a str>, os: Os) -> Vec<Vec<usize>> {
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        groups.entry(fold(name, os)).or_default().push(i);
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_everywhere() {
        for name in ["report.pdf", "ünïcödé.txt", "a b", ".hidden", "...x", "name.with.dots", "日本語"] {
            for os in [Os::Windows, Os::MacOs, Os::Linux] {
                assert_eq!(check(name, os), Ok(()), "{name} on {os}");
                assert_eq!(adjust(name, os).as_deref(), Some(name));
            }
        }
    }

    #[test]
    fn windows_refuses_its_forbidden_characters_and_linux_does_not() {
        for c in ['<', '>', ':', '"', '|', '?', '*', '\\'] {
            let name = format!("a{c}b");
            assert_eq!(check(&name, Os::Windows), Err(NameProblem::Character(c, Os::Windows)), "{name}");
            assert_eq!(adjust(&name, Os::Windows).as_deref(), Some("a_b"));
            assert_eq!(check(&name, Os::Linux), Ok(()), "{name}");
            assert_eq!(check(&name, Os::MacOs), Ok(()), "{name}");
        }
        assert_eq!(adjust("what?*<>|\".txt", Os::Windows).as_deref(), Some("what______.txt"));
    }

    #[test]
    fn device_names_are_reserved_on_windows_with_or_without_extension() {
        for name in ["CON", "con", "Aux", "aux.txt", "NUL.tar.gz", "prn", "COM1", "lpt9.log", "com¹", "nul .txt"] {
            assert!(matches!(check(name, Os::Windows), Err(NameProblem::Device(_))), "{name}");
            assert!(windows_special(name), "{name}");
            assert_eq!(check(name, Os::Linux), Ok(()), "{name}");
        }
        for name in ["CONSOLE", "com10", "lpt", "auxiliary.txt", "xcon", "con_", "COM0x"] {
            assert_eq!(check(name, Os::Windows), Ok(()), "{name}");
        }
        assert_eq!(adjust("CON", Os::Windows).as_deref(), Some("CON_"));
        assert_eq!(adjust("aux.txt", Os::Windows).as_deref(), Some("aux_.txt"));
        assert_eq!(adjust("com1.tar.gz", Os::Windows).as_deref(), Some("com1_.tar.gz"));
        assert_eq!(adjust("nul .txt", Os::Windows).as_deref(), Some("nul_ .txt"));
    }

    #[test]
    fn trailing_dots_and_spaces_are_kept_visible_on_windows() {
        assert_eq!(check("report.", Os::Windows), Err(NameProblem::TrailingDotOrSpace));
        assert_eq!(check("report ", Os::Windows), Err(NameProblem::TrailingDotOrSpace));
        assert_eq!(adjust("report.", Os::Windows).as_deref(), Some("report_"));
        assert_eq!(adjust("a. .", Os::Windows).as_deref(), Some("a___"));
        assert_eq!(check("report.", Os::Linux), Ok(()));
    }

    #[test]
    fn alternate_data_streams_are_special_on_windows() {
        assert!(windows_special("file.txt:secret"));
        assert!(windows_special("file.txt::$DATA"));
        assert!(windows_special("file.txt."), "opens file.txt");
        assert!(windows_special("file.txt "), "opens file.txt");
        assert!(!windows_special("file.txt"));
        assert!(!windows_special(".hidden"));
    }

    #[test]
    fn names_that_cannot_be_adjusted_are_refused() {
        for os in [Os::Windows, Os::MacOs, Os::Linux] {
            assert_eq!(adjust("", os), None);
            assert_eq!(adjust(".", os), None);
            assert_eq!(adjust("..", os), None);
            assert_eq!(adjust("a\u{1b}b", os), None);
        }
        assert_eq!(check(&"é".repeat(200), Os::Linux), Err(NameProblem::TooLong(Os::Linux)), "400 bytes");
        assert_eq!(check(&"é".repeat(200), Os::Windows), Ok(()), "200 UTF-16 units");
        assert_eq!(adjust(&"x".repeat(256), Os::Windows), None);
    }

    #[test]
    fn names_differing_only_in_case_are_one_file_on_windows_and_macos() {
        let names = ["Readme", "README", "readme.md", "other", "README.md"];
        assert_eq!(collisions(names, Os::Windows), vec![vec![0, 1], vec![2, 4]]);
        assert_eq!(collisions(names, Os::MacOs), vec![vec![0, 1], vec![2, 4]]);
        assert!(collisions(names, Os::Linux).is_empty());
        assert_eq!(fold("ÄBC", Os::Windows), "äbc");
    }

    #[test]
    fn problems_read_as_sentences() {
        assert_eq!(NameProblem::Character(':', Os::Windows).to_string(), "Windows does not allow ':' in a name");
        assert_eq!(
            check("aux.txt", Os::Windows).unwrap_err().to_string(),
            "\"aux\" is a device name on Windows (the console, a port or a printer)"
        );
    }
}
