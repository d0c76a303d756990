//! The hosts this client has met: a plain text file a person can read and edit, one
//! `host:port fingerprint` line per host (`#` starts a comment). The first connection to a
//! host records its fingerprint; later ones must present the same one.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::identity::Fingerprint;

/// The file's name in the configuration folder.
pub const FILE_NAME: &str = "known_hosts";

/// How a host's identity compares with what this client remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Never met: compare the fingerprint with the host's screen.
    First,
    /// The same identity as before.
    Known,
    /// A different identity than the one remembered (shown here).
    Changed { known: Fingerprint },
}

/// The key a host is remembered under: what the person typed, with the port made explicit
/// (`192.168.1.20:7878`, `[::1]:7878`, `nas.local:7878`), host names in lower case.
pub fn host_key(addr: &str, default_port: u16) -> String {
    let addr = addr.trim();
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return sa.to_string();
    }
    if let Ok(ip) = addr.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return SocketAddr::new(ip, default_port).to_string();
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => format!("{}:{port}", host.to_lowercase()),
        _ => format!("{}:{default_port}", addr.to_lowercase()),
    }
}

/// A known-hosts file (it need not exist yet).
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The file in [`super::identity::config_dir`].
    pub fn default_path() -> Option<PathBuf> {
        super::identity::config_dir().map(|d| d.join(FILE_NAME))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> io::Result<String> {
        match fs::read_to_string(&self.path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// The fingerprint remembered for `key` (the last line for it wins); lines that cannot be
    /// understood are skipped.
    pub fn lookup(&self, key: &str) -> io::Result<Option<Fingerprint>> {
        Ok(self.read()?.lines().filter_map(parse_line).filter(|(k, _)| *k == key).map(|(_, fp)| fp).next_back())
    }

    /// Compares `seen` with what is remembered for `key`.
    pub fn check(&self, key: &str, seen: Fingerprint) -> io::Result<Contact> {
        Ok(match self.lookup(key)? {
            None => Contact::First,
            Some(known) if known == seen => Contact::Known,
            Some(known) => Contact::Changed { known },
        })
    }

    /// Remembers `fingerprint` for `key`, replacing an earlier line for the same host and
    /// keeping every other line (comments included) as it was.
    pub fn remember(&self, key: &str, fingerprint: Fingerprint) -> io::Result<()> {
        // One at a time within this process (a browsing connection and a download can meet a
        // new host at the same moment): the file is read, changed and replaced as a whole.
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.read()?;
        let mut out = String::with_capacity(old.len() + 100);
        if old.is_empty() {
            out.push_str("# Hosts ferry has met: host:port, then the SHA-256 fingerprint of its key.\n");
            out.push_str("# Delete a line to forget a host.\n");
        }
        for line in old.lines() {
            if parse_line(line).is_some_and(|(k, _)| k == key) {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("{key} {}\n", fingerprint.hex()));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        // Written aside and renamed over the old file: a crash never leaves half a file.
        let tmp = self.path.with_extension(format!("{}.tmp", std::process::id()));
        let result = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(out.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &self.path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn parse_line(line: &str) -> Option<(&str, Fingerprint)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let key = words.next()?;
    let fp = Fingerprint::parse_hex(words.next()?)?;
    Some((key, fp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_remembered_at_once_from_several_threads_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let known = std::sync::Arc::new(KnownHosts::new(dir.path().join("known_hosts")));
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let known = known.clone();
                std::thread::spawn(move || {
                    for j in 0..20u8 {
                        known.remember(&format!("10.0.{i}.{j}:7878"), Fingerprint([i ^ j; 32])).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for i in 0..8u8 {
            for j in 0..20u8 {
                assert_eq!(known.lookup(&format!("10.0.{i}.{j}:7878")).unwrap(), Some(Fingerprint([i ^ j; 32])));
            }
        }
    }

    #[test]
    fn keys_make_the_port_explicit() {
        assert_eq!(host_key("192.168.1.20", 7878), "192.168.1.20:7878");
        assert_eq!(host_key("192.168.1.20:9000", 7878), "192.168.1.20:9000");
        assert_eq!(host_key("::1", 7878), "[::1]:7878");
        assert_eq!(host_key("[::1]:80", 7878), "[::1]:80");
        assert_eq!(host_key("NAS.local", 7878), "nas.local:7878");
        assert_eq!(host_key("nas.local:1", 7878), "nas.local:1");
    }

    #[test]
    fn first_contact_then_known_then_changed() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(dir.path().join("sub").join(FILE_NAME));
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        assert_eq!(kh.check("h:1", a).unwrap(), Contact::First);
        kh.remember("h:1", a).unwrap();
        assert_eq!(kh.check("h:1", a).unwrap(), Contact::Known);
        assert_eq!(kh.check("h:1", b).unwrap(), Contact::Changed { known: a });
        assert_eq!(kh.check("h:2", b).unwrap(), Contact::First, "another port is another host");
        kh.remember("h:1", b).unwrap();
        assert_eq!(kh.check("h:1", b).unwrap(), Contact::Known);
        let text = fs::read_to_string(kh.path()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("h:1 ")).count(), 1, "{text}");
    }

    #[test]
    fn a_person_edited_file_is_read_and_its_other_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let a = Fingerprint([0xaa; 32]);
        fs::write(&path, format!("# mine\n\n  nas:7878   {}  \nnot a line\nother:1 {}\n", a.hex().to_uppercase(), a))
            .unwrap();
        let kh = KnownHosts::new(&path);
        assert_eq!(kh.lookup("nas:7878").unwrap(), Some(a));
        kh.remember("new:2", Fingerprint([3; 32])).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        for kept in ["# mine", "not a line", "other:1 ", "nas:7878"] {
            assert!(text.contains(kept), "{kept:?} lost: {text}");
        }
        assert_eq!(kh.lookup("new:2").unwrap(), Some(Fingerprint([3; 32])));
    }
}
