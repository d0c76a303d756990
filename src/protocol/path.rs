//! Path and name rules: pure string checks, no file system.
//!
//! - A path a client sends is checked by [`split_request_path`]; the server resolves it on disk
//!   (in its private `confine` module, which also keeps it inside the hosted folder) only after
//!   this check has accepted it.
//! - A name a host sends becomes a local file name only through [`check_file_name`] and this
//!   system's name rules ([`check_local_name`] refuses what they refuse; the engine saves under
//!   an adjusted name, [`super::names::adjust`], and reports it).

use std::fmt;

use super::names::{self, NameProblem};

/// Why a path a client sent is refused before anything on disk is touched (`bad_path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("absolute paths are not allowed")]
    Absolute,
    #[error("empty path component (\"//\" or a trailing \"/\")")]
    EmptyComponent,
    #[error("\".\" and \"..\" components are not allowed")]
    DotComponent,
    #[error("backslashes are not allowed")]
    Backslash,
    #[error("NUL bytes are not allowed")]
    Nul,
    #[error("path is longer than {max} bytes")]
    TooLong { max: usize },
}

/// Longest path a server considers (Linux's PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;

/// Splits a protocol path into its components, applying the contract's syntax rules:
/// `""` is the hosted folder; otherwise components are separated by `/`, and absolute paths,
/// empty components, `.`, `..`, backslashes and NUL are refused.
pub fn split_request_path(path: &str) -> Result<Vec<&str>, BadPath> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(BadPath::TooLong { max: MAX_PATH_LEN });
    }
    if path.contains('\0') {
        return Err(BadPath::Nul);
    }
    if path.contains('\\') {
        return Err(BadPath::Backslash);
    }
    if path.starts_with('/') {
        return Err(BadPath::Absolute);
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err(BadPath::EmptyComponent),
            "." | ".." => return Err(BadPath::DotComponent),
            _ => {}
        }
    }
    Ok(parts)
}

/// Joins a folder path and a child name into a protocol path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// The parent of a protocol path (`""` for a top-level name and for `""` itself).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Why a name from the network cannot be used as a local file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeName {
    #[error("the name is empty")]
    Empty,
    #[error("\".\" and \"..\" are not file names")]
    Dots,
    #[error("the name contains a path separator")]
    Separator,
    #[error("the name contains a control character")]
    Control,
    #[error("the name is longer than 255 bytes")]
    TooLong,
    #[error("{0}")]
    NotValidHere(NameProblem),
}

/// Checks that `name` (which came from the network) can be used as it is as a file name on
/// this system: [`check_file_name`], and the rules of [`names::Os::current`] (on Windows no
/// `a:b`, `CON` or `name.`, which would reach a drive, a device or another name). To save such
/// a name under an adjusted one instead, see [`names::adjust`].
pub fn check_local_name(name: &str) -> Result<&str, UnsafeName> {
    check_file_name(name)?;
    names::check(name, names::Os::current()).map_err(UnsafeName::NotValidHere)?;
    Ok(name)
}

/// Checks that `name` (which came from the network) is a single, harmless file name on any
/// system, though perhaps one that some system must adjust ([`names::adjust`]): not empty, not
/// `.` or `..`, no `/` or `\`, no control characters, at most 255 bytes.
pub fn check_file_name(name: &str) -> Result<&str, UnsafeName> {
    if name.is_empty() {
        return Err(UnsafeName::Empty);
    }
    if name == "." || name == ".." {
        return Err(UnsafeName::Dots);
    }
    if name.contains(['/', '\\']) {
        return Err(UnsafeName::Separator);
    }
    if name.chars().any(char::is_control) {
        return Err(UnsafeName::Control);
    }
    if name.len() > 255 {
        return Err(UnsafeName::TooLong);
    }
    Ok(name)
}

/// The last component of a protocol path, checked with [`check_file_name`]: the default
/// local name for a download (saving adjusts it to this system's rules, and says so).
pub fn default_local_name(path: &str) -> Result<&str, UnsafeName> {
    check_file_name(path.rsplit('/').next().unwrap_or(path))
}

/// Displays untrusted text with control characters (and only those) escaped, so a name sent by
/// a peer cannot move the cursor, clear the screen or forge output lines on a terminal.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_empty_path() {
        assert_eq!(split_request_path("").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn ordinary_paths_split_on_slash() {
        assert_eq!(split_request_path("a/b c/ü.txt").unwrap(), ["a", "b c", "ü.txt"]);
        assert_eq!(split_request_path("...").unwrap(), ["..."]);
        assert_eq!(split_request_path("..a/.b").unwrap(), ["..a", ".b"]);
    }

    #[test]
    fn every_hostile_form_of_the_contract_is_refused() {
        let cases = [
            ("/etc/passwd", BadPath::Absolute),
            ("/", BadPath::Absolute),
            ("a//b", BadPath::EmptyComponent),
            ("a/", BadPath::EmptyComponent),
            (".", BadPath::DotComponent),
            ("..", BadPath::DotComponent),
            ("a/../../b", BadPath::DotComponent),
            ("a/./b", BadPath::DotComponent),
            ("..\\..\\windows", BadPath::Backslash),
            ("a\\b", BadPath::Backslash),
            ("a\0b", BadPath::Nul),
        ];
        for (path, want) in cases {
            assert_eq!(split_request_path(path), Err(want), "{path:?}");
        }
        assert_eq!(split_request_path(&"a/".repeat(3000)), Err(BadPath::TooLong { max: MAX_PATH_LEN }));
    }

    #[test]
    fn local_names_from_the_network_are_checked() {
        assert_eq!(default_local_name("sub/dir/report 2.pdf"), Ok("report 2.pdf"));
        assert_eq!(default_local_name("ünïcödé.txt"), Ok("ünïcödé.txt"));
        assert_eq!(default_local_name("a/.."), Err(UnsafeName::Dots));
        assert_eq!(default_local_name(""), Err(UnsafeName::Empty));
        assert_eq!(default_local_name("a/"), Err(UnsafeName::Empty));
        assert_eq!(check_local_name("x\\y"), Err(UnsafeName::Separator));
        assert_eq!(check_local_name("evil\x1b[2J"), Err(UnsafeName::Control));
        assert_eq!(check_local_name("new\nline"), Err(UnsafeName::Control));
        assert_eq!(check_local_name(&"n".repeat(256)), Err(UnsafeName::TooLong));
    }

    #[test]
    fn local_names_follow_this_systems_rules_and_file_names_any_systems() {
        assert_eq!(check_file_name("aux.txt"), Ok("aux.txt"));
        assert_eq!(check_file_name("a:b"), Ok("a:b"));
        assert_eq!(default_local_name("dir/CON"), Ok("CON"), "the engine adjusts it when saving");
        let here = names::Os::current();
        for name in ["aux.txt", "a:b", "report."] {
            assert_eq!(check_local_name(name).is_ok(), names::check(name, here).is_ok(), "{name} on {here}");
        }
    }

    #[test]
    fn escaped_shows_control_characters_harmlessly() {
        assert_eq!(Escaped("a\x1b[31mb\nc\u{7f}").to_string(), "a\\u{1b}[31mb\\nc\\u{7f}");
        assert_eq!(Escaped("plain ü").to_string(), "plain ü");
    }

    #[test]
    fn join_and_parent_are_inverse() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a/b", "c"), "a/b/c");
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(parent(""), "");
    }
}
