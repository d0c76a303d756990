//! The host side: announce `_ferry._tcp.local.` while hosting, withdraw it when hosting stops.
//!
//! ```no_run
//! use ferry::discovery::{Announcement, Announcer};
//!
//! let listen = "0.0.0.0:7878".parse().unwrap();
//! match Announcer::start(&Announcement::new(listen, "photos"), None) {
//!     Ok((announcer, _events)) => {
//!         println!("announced as {:?}", announcer.instance());
//!         // ... host ...
//!         drop(announcer); // withdraws (TTL 0) and stops the mDNS thread
//!     }
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo};

use super::{DiscoveryError, SERVICE_TYPE, Txt, disabled, instance_name, machine_name, mdns_host_name};
use crate::protocol::{PLAIN_VERSION, VERSION};
use crate::sink::{Notify, Sink};

/// What to announce.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Where the host listens, as bound: a wildcard (`0.0.0.0`, `[::]`) announces on every
    /// interface of that family, a specific address only on its interface.
    pub listen: SocketAddr,
    /// The hosted folder's name.
    pub folder: String,
    /// The host asks for a PIN.
    pub pin: bool,
    /// The host speaks version 2 (encrypted).
    pub tls: bool,
    /// The host's identity fingerprint, once hosts have one.
    pub id: Option<String>,
    /// The name people see; by default "FOLDER on MACHINE".
    pub instance: Option<String>,
}

impl Announcement {
    pub fn new(listen: SocketAddr, folder: impl Into<String>) -> Self {
        Announcement { listen, folder: folder.into(), pin: false, tls: false, id: None, instance: None }
    }

    /// What a host started by ferry announces: the hosted folder's name, whether it asks for a
    /// PIN, and (when it speaks version 2) its identity, so browsers can show its colours.
    pub fn for_host(
        listen: SocketAddr,
        root: &std::path::Path,
        pin: bool,
        identity: Option<&crate::transport::Fingerprint>,
    ) -> Self {
        let folder = root.file_name().map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
        let mut what = Announcement::new(listen, folder);
        what.pin = pin;
        what.tls = identity.is_some();
        what.id = identity.map(|id| id.hex());
        what
    }

    /// The TXT record this announcement carries.
    pub fn txt(&self) -> Txt {
        let version = if self.tls { VERSION } else { PLAIN_VERSION };
        Txt { version, folder: self.folder.clone(), pin: self.pin, tls: self.tls, id: self.id.clone() }
    }
}

/// What the announcer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceEvent {
    /// The announcement went out (after probing that the name is free) from these addresses.
    Announced { instance: String, from: String },
    /// Another host already used the name; this one is announced under `instance` instead.
    Renamed { instance: String },
    /// The mDNS worker reported a problem; the announcement may still work elsewhere.
    Problem(String),
    /// The last event: the announcement was withdrawn and the mDNS thread has ended.
    Withdrawn,
}

/// A running announcement. Dropping it withdraws the announcement (TTL 0, so browsers drop
/// the host at once) and stops the mDNS thread.
#[must_use = "dropping the Announcer withdraws the announcement at once"]
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
    instance: String,
    forwarder: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts announcing; returns at once (the announcement goes out about a second later,
    /// after probing that the name is free). Fails when discovery is turned off
    /// ([`super::DISABLE_ENV`]), when the host listens on loopback only, or when mDNS cannot
    /// start.
    pub fn start(
        what: &Announcement,
        notify: Option<Notify>,
    ) -> Result<(Announcer, Receiver<AnnounceEvent>), DiscoveryError> {
        let ip = what.listen.ip();
        if ip.is_loopback() {
            return Err(DiscoveryError::LoopbackOnly(ip));
        }
        if disabled() {
            return Err(DiscoveryError::Disabled);
        }
        let machine = machine_name();
        let instance = what.instance.clone().unwrap_or_else(|| instance_name(&what.folder, &machine));
        let pairs = what.txt().to_pairs();

        let daemon = ServiceDaemon::new()?;
        let started = (|| {
            select_interfaces(&daemon, ip)?;
            let monitor = daemon.monitor()?;
            let info = if ip.is_unspecified() {
                ServiceInfo::new(
                    SERVICE_TYPE,
                    &instance,
                    &mdns_host_name(&machine),
                    (),
                    what.listen.port(),
                    &pairs[..],
                )?
                .enable_addr_auto()
            } else {
                ServiceInfo::new(
                    SERVICE_TYPE,
                    &instance,
                    &mdns_host_name(&machine),
                    ip,
                    what.listen.port(),
                    &pairs[..],
                )?
            };
            let fullname = info.get_fullname().to_string();
            daemon.register(info)?;
            Ok::<_, mdns_sd::Error>((monitor, fullname))
        })();
        let (monitor, fullname) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };

        let (sink, events) = Sink::new(notify);
        let forwarder = thread::Builder::new()
            .name("ferry-announce".into())
            .spawn(move || {
                // Ends when the mDNS thread does (its side of the channel goes away).
                while let Ok(event) = monitor.recv() {
                    match event {
                        DaemonEvent::Announce(name, from) => {
                            sink.send(AnnounceEvent::Announced { instance: unescape_instance(&name), from })
                        }
                        DaemonEvent::NameChange(change) => {
                            sink.send(AnnounceEvent::Renamed { instance: unescape_instance(&change.new_name) })
                        }
                        DaemonEvent::Error(e) => sink.send(AnnounceEvent::Problem(e.to_string())),
                        _ => {}
                    }
                }
                sink.send(AnnounceEvent::Withdrawn);
            })
            .map_err(|e| DiscoveryError::Mdns(format!("cannot start a thread: {e}")));
        let forwarder = match forwarder {
            Ok(f) => f,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e);
            }
        };
        Ok((Announcer { daemon, fullname, instance, forwarder: Some(forwarder) }, events))
    }

    /// The name people see (before any renaming the network asked for).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Withdraws the announcement and waits for the mDNS thread (what dropping it does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // The goodbye (TTL 0) goes out while the unregister command is handled; wait for it
        // so that it is on the wire before the daemon shuts down.
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        if let Some(f) = self.forwarder.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !f.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if f.is_finished() {
                let _ = f.join();
            }
        }
    }
}

/// Which interfaces the mDNS worker uses: never loopback; for a wildcard, every interface of
/// the family the host accepts (`[::]` accepts both); for one address, its interface only.
fn select_interfaces(daemon: &ServiceDaemon, ip: IpAddr) -> Result<(), mdns_sd::Error> {
    daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => daemon.disable_interface(IfKind::IPv6),
        IpAddr::V6(v6) if v6.is_unspecified() => Ok(()),
        _ => {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(ip))
        }
    }
}

/// "photos on box._ferry._tcp.local." -> "photos on box" (mdns-sd escapes dots and backslashes).
pub(crate) fn unescape_instance(fullname: &str) -> String {
    let name = fullname.strip_suffix(SERVICE_TYPE).map(|s| s.strip_suffix('.').unwrap_or(s)).unwrap_or(fullname);
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_read_back_from_full_names() {
        assert_eq!(unescape_instance("photos on box._ferry._tcp.local."), "photos on box");
        assert_eq!(unescape_instance("v1\\.2 on box._ferry._tcp.local."), "v1.2 on box");
        assert_eq!(unescape_instance("a\\\\b._ferry._tcp.local."), "a\\b");
    }

    #[test]
    fn nothing_is_announced_for_a_loopback_host() {
        // Refused before any socket is opened.
        for listen in ["127.0.0.1:7878", "[::1]:7878"] {
            let a = Announcement::new(listen.parse().unwrap(), "x");
            assert!(matches!(Announcer::start(&a, None), Err(DiscoveryError::LoopbackOnly(_))), "{listen}");
        }
    }
}
