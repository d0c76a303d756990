//! When nothing is found: what was tried, and what to check.
//!
//! The most common reasons discovery fails are outside ferry (multicast filtered by a router,
//! Wi-Fi "AP isolation", a firewall, a VPN, the two machines on different networks). The
//! diagnosis says which interfaces were used, whether a multicast query could be sent on each
//! (tried for real, with one mDNS query per interface), whether anything at all answered,
//! which hosts were seen but did not answer on their TCP port, and what to check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use super::SERVICE_TYPE;

/// The mDNS multicast groups and port (RFC 6762).
const MDNS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
const MDNS_PORT: u16 = 5353;

/// One interface discovery used, and whether a multicast query could be sent on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCheck {
    pub name: String,
    pub ip: IpAddr,
    /// `Err` says why sending failed (for example a local firewall: "Operation not permitted").
    pub sent: Result<(), String>,
}

/// What was tried and what was seen, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// How long the browser listened.
    pub waited: Duration,
    /// The interfaces used (one line per interface and address family).
    pub interfaces: Vec<InterfaceCheck>,
    /// Interfaces up but not used, and why (a VPN's point-to-point link).
    pub skipped: Vec<(String, String)>,
    /// mDNS queries the browser sent.
    pub queries: u64,
    /// Whether any mDNS answer arrived at all (from a ferry host or any other device).
    pub answered: bool,
    /// How many other kinds of service answered (printers, speakers…): multicast works here.
    pub other_services: usize,
    /// Problems the mDNS worker reported.
    pub problems: Vec<String>,
    /// Hosts announced but not answering on their TCP port: (name, address, why).
    pub unreachable: Vec<(String, SocketAddr, String)>,
    /// Remembered hosts that did not answer: (address, why).
    pub remembered: Vec<(String, String)>,
}

impl Diagnosis {
    /// One line: the gist.
    pub fn summary(&self) -> String {
        let secs = self.waited.as_secs_f64().round();
        if !self.unreachable.is_empty() {
            let names: Vec<&str> = self.unreachable.iter().map(|(n, _, _)| n.as_str()).collect();
            format!("No reachable host in {secs:.0} s; seen but not reachable: {}", names.join(", "))
        } else {
            format!("No ferry host found in {secs:.0} s")
        }
    }

    /// What was tried (lines starting "tried:"), then what to check ("check:").
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("{}.", self.summary())];
        if self.interfaces.is_empty() {
            out.push("tried: no network interface is up besides loopback: this machine is on no network".into());
        } else {
            let list: Vec<String> = self
                .interfaces
                .iter()
                .map(|i| match &i.sent {
                    Ok(()) => format!("{} {} (multicast sent)", i.name, i.ip),
                    Err(e) => format!("{} {} (multicast could not be sent: {e})", i.name, i.ip),
                })
                .collect();
            out.push(format!("tried: interfaces {}", list.join(", ")));
        }
        for (name, why) in &self.skipped {
            out.push(format!("tried: not {name}: {why}"));
        }
        let answer = if self.other_services > 0 {
            format!(
                "answers came from other devices ({} kinds of service), so multicast works here, but no ferry host answered",
                self.other_services
            )
        } else if self.answered {
            "a ferry host answered, but none could be reached".to_string()
        } else {
            "nothing answered, not even another device".to_string()
        };
        out.push(format!("tried: {} mDNS queries (for {SERVICE_TYPE} and for any service); {answer}", self.queries));
        for p in &self.problems {
            out.push(format!("tried: mDNS reported: {p}"));
        }
        for (name, addr, why) in &self.unreachable {
            out.push(format!("seen but not reachable: \"{name}\" at {addr}: {why}"));
        }
        for (addr, why) in &self.remembered {
            out.push(format!("tried: remembered host {addr}: {why}"));
        }

        let send_failed = !self.interfaces.is_empty() && self.interfaces.iter().all(|i| i.sent.is_err());
        if send_failed {
            out.push("check: this machine's firewall lets ferry send and receive UDP port 5353 (mDNS)".into());
        }
        if !self.unreachable.is_empty() {
            let mut ports: Vec<String> = self.unreachable.iter().map(|(_, a, _)| a.port().to_string()).collect();
            ports.dedup();
            out.push(format!(
                "check: the host's firewall allows ferry's TCP port ({}); the host was seen, so mDNS works",
                ports.join(", ")
            ));
        } else {
            out.push("check: both machines are on the same network (the same Wi-Fi, not a guest network)".into());
            out.push(
                "check: the host's firewall allows UDP 5353 (mDNS) and ferry's TCP port (7878 unless changed)".into(),
            );
            out.push("check: the Wi-Fi router's \"AP isolation\" (\"client isolation\") is off".into());
            let vpn: Vec<&str> = self.skipped.iter().map(|(n, _)| n.as_str()).collect();
            if vpn.is_empty() {
                out.push("check: no VPN is running on either machine".into());
            } else {
                out.push(format!("check: no VPN is running on either machine (here: {})", vpn.join(", ")));
            }
        }
        out.push("check: or type the address the host shows (for example 192.168.1.20:7878)".into());
        out
    }
}

/// The interfaces discovery uses (up, not loopback, not point-to-point), one per name and
/// address family, each with the result of sending one real mDNS query on it.
pub fn check_interfaces() -> Vec<InterfaceCheck> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for intf in if_addrs::get_if_addrs().unwrap_or_default() {
        if !intf.is_oper_up() || intf.is_loopback() || intf.is_p2p() {
            continue;
        }
        let ip = intf.ip();
        if !seen.insert((intf.name.clone(), ip.is_ipv4())) {
            continue;
        }
        let sent = send_query(ip, intf.index.unwrap_or(0)).map_err(|e| e.to_string());
        out.push(InterfaceCheck { name: intf.name, ip, sent });
    }
    out.sort_by(|a, b| (&a.name, a.ip.is_ipv6()).cmp(&(&b.name, b.ip.is_ipv6())));
    out
}

/// Interfaces that are up but that mDNS does not use: point-to-point links (VPNs, mostly).
pub fn skipped_interfaces() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.is_oper_up() && !i.is_loopback() && i.is_p2p())
        .map(|i| (i.name, "a point-to-point link (a VPN?), where multicast does not go".to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Sends one mDNS query for ferry's service type out of one interface.
fn send_query(ip: IpAddr, index: u32) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let packet = query_packet(SERVICE_TYPE);
    match ip {
        IpAddr::V4(v4) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new(ip, 0).into())?;
            s.set_multicast_if_v4(&v4)?;
            s.set_multicast_ttl_v4(255)?;
            s.send_to(&packet, &SocketAddr::new(MDNS_V4.into(), MDNS_PORT).into())?;
        }
        IpAddr::V6(_) => {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0).into())?;
            s.set_multicast_if_v6(index)?;
            s.set_multicast_hops_v6(255)?;
            s.send_to(&packet, &SocketAddr::V6(SocketAddrV6::new(MDNS_V6, MDNS_PORT, 0, index)).into())?;
        }
    }
    Ok(())
}

/// A DNS query (id 0, no flags) for the PTR records of `name`, as mDNS sends it.
fn query_packet(name: &str) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&[0, 12, 0, 1]); // QTYPE PTR, QCLASS IN
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_asks_for_ferrys_ptr_records() {
        let p = query_packet("_ferry._tcp.local.");
        assert_eq!(&p[..12], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[12..], b"\x06_ferry\x04_tcp\x05local\x00\x00\x0c\x00\x01");
    }

    fn empty() -> Diagnosis {
        Diagnosis {
            waited: Duration::from_secs(3),
            interfaces: vec![InterfaceCheck { name: "eth0".into(), ip: "10.0.0.2".parse().unwrap(), sent: Ok(()) }],
            skipped: vec![],
            queries: 3,
            answered: false,
            other_services: 0,
            problems: vec![],
            unreachable: vec![],
            remembered: vec![],
        }
    }

    #[test]
    fn nothing_heard_names_the_interfaces_and_the_usual_culprits() {
        let text = empty().lines().join("\n");
        for needle in [
            "No ferry host found in 3 s",
            "eth0 10.0.0.2 (multicast sent)",
            "3 mDNS queries",
            "nothing answered",
            "same network",
            "UDP 5353",
            "AP isolation",
            "VPN",
            "type the address",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_host_seen_but_refusing_its_port_is_named() {
        let mut d = empty();
        d.answered = true;
        d.unreachable = vec![("photos on a".into(), "10.0.0.1:7900".parse().unwrap(), "refused".into())];
        let text = d.lines().join("\n");
        assert!(text.contains("seen but not reachable: \"photos on a\" at 10.0.0.1:7900"), "{text}");
        assert!(text.contains("TCP port (7900)"), "{text}");
        assert!(d.summary().contains("photos on a"));
    }

    #[test]
    fn a_local_firewall_blocking_multicast_is_pointed_at() {
        let mut d = empty();
        d.interfaces[0].sent = Err("Operation not permitted (os error 1)".into());
        d.skipped = vec![("tun0".into(), "a point-to-point link (a VPN?), where multicast does not go".into())];
        let text = d.lines().join("\n");
        assert!(text.contains("multicast could not be sent: Operation not permitted"), "{text}");
        assert!(text.contains("this machine's firewall"), "{text}");
        assert!(text.contains("(here: tun0)"), "{text}");
    }

    #[test]
    fn no_interface_means_no_network() {
        let mut d = empty();
        d.interfaces.clear();
        assert!(d.lines().join("\n").contains("on no network"));
    }
}
