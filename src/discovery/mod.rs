//! Hosts appear by themselves: DNS-SD over multicast DNS (RFC 6762, RFC 6763).
//!
//! - [`announce`]: a hosting ferry announces `_ferry._tcp.local.` on the interfaces it listens
//!   on and withdraws the announcement (TTL 0) when hosting stops.
//! - [`browse`]: a client browses for that type, checks that each host it hears of answers on
//!   its TCP port, probes the hosts the person reached before (another subnet, where multicast
//!   does not go), and reports found / updated / lost hosts as events.
//! - [`diagnose`]: when nothing is found, what was tried (interfaces, multicast sent and
//!   answered or not) and what to check.
//!
//! What a host announces:
//!
//! ```text
//! PTR  _ferry._tcp.local.                     -> photos on alice-laptop._ferry._tcp.local.
//! SRV  photos on alice-laptop._ferry._tcp.local. -> ferry-alice-laptop.local. port 7878
//! TXT  v=1  name=photos  pin=0|1  tls=0|1  [id=<64 hex>]
//! A / AAAA  ferry-alice-laptop.local.          -> the addresses of the announcing interfaces
//! ```
//!
//! [`disabled`] (`FERRY_NO_DISCOVERY=1`) turns all of it off: nothing is sent or listened for.
//! The mDNS work runs on the `mdns-sd` crate's own thread, which sleeps between queries.

pub mod announce;
pub mod browse;
pub mod diagnose;

use std::net::IpAddr;

pub use announce::{AnnounceEvent, Announcement, Announcer};
pub use browse::{BrowseEvent, BrowseOptions, Browser, Host, Lookup, Reach, Source, lookup};
pub use diagnose::Diagnosis;

/// The DNS-SD service type ferry announces and browses for.
pub const SERVICE_TYPE: &str = "_ferry._tcp.local.";
/// Set to `1` to turn announcing and browsing off (tests, CI, benchmarks, or by choice).
pub const DISABLE_ENV: &str = "FERRY_NO_DISCOVERY";
/// The longest instance name DNS allows (one label).
pub const MAX_INSTANCE_LEN: usize = 63;

/// Whether discovery is turned off by `FERRY_NO_DISCOVERY` (any value but empty or `0`).
pub fn disabled() -> bool {
    std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Why discovery did not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery is turned off ({DISABLE_ENV} is set)")]
    Disabled,
    #[error("not announced: the host listens on {0}, which other machines cannot reach")]
    LoopbackOnly(IpAddr),
    #[error("cannot start mDNS: {0}")]
    Mdns(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError::Mdns(e.to_string())
    }
}

/// What a host says about itself in its TXT record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txt {
    /// `v`: the protocol version the host speaks.
    pub version: u32,
    /// `name`: the hosted folder's name (for display; the host's `hello` is authoritative).
    pub folder: String,
    /// `pin`: the host asks for a PIN.
    pub pin: bool,
    /// `tls`: the host speaks version 2 (encrypted).
    pub tls: bool,
    /// `id`: the host's identity fingerprint (64 hex), once hosts have identities.
    pub id: Option<String>,
}

impl Txt {
    /// The TXT keys and values, in the order announced. Each `key=value` string fits the
    /// 255 bytes a TXT string can hold: a long folder name is cut at a character boundary.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("v".to_string(), self.version.to_string()),
            ("name".to_string(), truncate_utf8(&self.folder, 255 - "name=".len()).to_string()),
            ("pin".to_string(), flag(self.pin).to_string()),
            ("tls".to_string(), flag(self.tls).to_string()),
        ];
        if let Some(id) = &self.id {
            v.push(("id".to_string(), id.clone()));
        }
        v
    }

    /// Reads a TXT record through `get` (key -> value). Lenient: a missing or odd value takes
    /// the default, so a newer host with more keys, or an older one with fewer, still shows.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Txt {
        let id = get("id").filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        Txt {
            version: get("v").and_then(|v| v.trim().parse().ok()).unwrap_or(1),
            folder: get("name").unwrap_or_default(),
            pin: get("pin").is_some_and(|v| v.trim() == "1"),
            tls: get("tls").is_some_and(|v| v.trim() == "1"),
            id: id.map(|s| s.to_ascii_lowercase()),
        }
    }
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The name people see: "photos on alice-laptop", at most 63 bytes (the folder name is
/// shortened first, then the machine's).
pub fn instance_name(folder: &str, machine: &str) -> String {
    let folder = if folder.trim().is_empty() { "ferry" } else { folder.trim() };
    let machine = machine.trim();
    if machine.is_empty() {
        return truncate_utf8(folder, MAX_INSTANCE_LEN).to_string();
    }
    let joiner = " on ";
    let machine = truncate_utf8(machine, MAX_INSTANCE_LEN / 2);
    let room = MAX_INSTANCE_LEN - joiner.len() - machine.len();
    format!("{}{joiner}{machine}", truncate_utf8(folder, room))
}

/// This machine's name, without a domain ("alice-laptop"), or "" when the system has none.
pub fn machine_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    name.split('.').next().unwrap_or_default().trim().to_string()
}

/// The mDNS host name the SRV record points to: `ferry-<machine>.local.`, made of letters,
/// digits and hyphens. It is ferry's own name so that it never clashes with the name the
/// system's own mDNS responder (Avahi, Bonjour) uses for this machine.
pub fn mdns_host_name(machine: &str) -> String {
    let mut label: String =
        machine.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    label = label.trim_matches('-').to_string();
    label.truncate(40);
    if label.is_empty() { "ferry.local.".to_string() } else { format!("ferry-{label}.local.") }
}

/// Whether what the person typed is an address (`1.2.3.4`, `[::1]:7878`, `host:7878`,
/// `nas.lan`, `localhost`) rather than the name of a host discovery may know
/// ("photos on alice-laptop", "photos", "alice-laptop").
pub fn is_address(typed: &str) -> bool {
    let t = typed.trim();
    if t.parse::<std::net::SocketAddr>().is_ok()
        || t.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
        || t.eq_ignore_ascii_case("localhost")
    {
        return true;
    }
    if t.chars().any(char::is_whitespace) {
        return false;
    }
    let has_port = t.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    has_port || t.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_told_from_host_names() {
        for a in
            ["10.0.0.1", "10.0.0.1:7878", "::1", "[::1]:80", "[fe80::1%2]:7878", "localhost", "nas.lan", "nas:7878"]
        {
            assert!(is_address(a), "{a}");
        }
        for n in ["photos on alice-laptop", "photos", "alice-laptop", "a:b on box"] {
            assert!(!is_address(n), "{n}");
        }
    }

    #[test]
    fn txt_round_trips_through_its_pairs() {
        let txt = Txt { version: 1, folder: "photos".into(), pin: true, tls: false, id: None };
        let pairs = txt.to_pairs();
        assert_eq!(
            pairs,
            vec![
                ("v".to_string(), "1".to_string()),
                ("name".to_string(), "photos".to_string()),
                ("pin".to_string(), "1".to_string()),
                ("tls".to_string(), "0".to_string()),
            ]
        );
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(Txt::from_lookup(get), txt);
    }

    #[test]
    fn txt_id_is_announced_only_when_there_is_one_and_read_only_when_well_formed() {
        let id = "ab".repeat(32);
        let txt = Txt { version: 2, folder: "f".into(), pin: false, tls: true, id: Some(id.clone()) };
        assert!(txt.to_pairs().contains(&("id".to_string(), id.clone())));
        let read = Txt::from_lookup(|k| if k == "id" { Some(id.to_uppercase()) } else { None });
        assert_eq!(read.id.as_deref(), Some(id.as_str()));
        let bad = Txt::from_lookup(|k| if k == "id" { Some("not-hex".into()) } else { None });
        assert_eq!(bad.id, None);
    }

    #[test]
    fn txt_from_an_unknown_host_takes_defaults() {
        let t = Txt::from_lookup(|_| None);
        assert_eq!(t, Txt { version: 1, folder: String::new(), pin: false, tls: false, id: None });
        let t = Txt::from_lookup(|k| if k == "v" { Some("x".into()) } else { Some("yes".into()) });
        assert_eq!((t.version, t.pin, t.tls), (1, false, false));
    }

    #[test]
    fn a_long_folder_name_still_fits_a_txt_string() {
        let folder = "é".repeat(200); // 400 bytes
        let txt = Txt { folder, ..Default::default() };
        let (_, name) = txt.to_pairs().into_iter().find(|(k, _)| k == "name").unwrap();
        assert!("name=".len() + name.len() <= 255);
        assert!(name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn instance_names_fit_one_dns_label() {
        assert_eq!(instance_name("photos", "alice-laptop"), "photos on alice-laptop");
        assert_eq!(instance_name("", "box"), "ferry on box");
        assert_eq!(instance_name("photos", ""), "photos");
        let long = instance_name(&"ü".repeat(80), &"m".repeat(80));
        assert!(long.len() <= MAX_INSTANCE_LEN, "{} bytes", long.len());
        assert!(long.contains(" on "), "{long}");
    }

    #[test]
    fn mdns_host_names_are_ferry_labels_under_local() {
        assert_eq!(mdns_host_name("Alice's MacBook"), "ferry-alice-s-macbook.local.");
        assert_eq!(mdns_host_name(""), "ferry.local.");
        assert_eq!(mdns_host_name("--"), "ferry.local.");
    }

    #[test]
    fn a_found_hosts_address_is_read_back_by_the_client() {
        // Host::address() prints a SocketAddr; a link-local IPv6 one keeps its scope.
        for a in ["10.1.2.3:7878", "[2001:db8::1]:9", "[fe80::1%2]:7878"] {
            let sa: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(crate::client::resolve_addr(&sa.to_string()).unwrap(), vec![sa]);
        }
    }
}
