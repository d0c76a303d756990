//! This machine's network addresses, to tell the other person what to type.

use std::net::{IpAddr, SocketAddr};

/// Addresses other machines on the LAN can use to reach this one: IPv4 first, then IPv6;
/// loopback and link-local IPv6 (unusable without a scope) are left out.
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    v.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    v.dedup();
    v
}

/// Addresses other machines can use to reach a listener bound to `listening`. A wildcard
/// listener is reached at this machine's LAN addresses of the families it accepts: the IPv6
/// wildcard takes both (ferry listens dual-stack there), the IPv4 wildcard IPv4 only. A listener
/// on one address is reached at that address alone.
pub fn reachable_addresses(listening: SocketAddr) -> Vec<IpAddr> {
    reachable_among(listening, lan_addresses())
}

fn reachable_among(listening: SocketAddr, lan: Vec<IpAddr>) -> Vec<IpAddr> {
    match listening.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => lan,
        IpAddr::V4(ip) if ip.is_unspecified() => lan.into_iter().filter(IpAddr::is_ipv4).collect(),
        ip => vec![ip],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_wildcard_is_not_advertised_at_ipv6_addresses() {
        let lan: Vec<IpAddr> = vec!["192.168.1.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
        let v4: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        let dual: SocketAddr = "[::]:7878".parse().unwrap();
        let one: SocketAddr = "192.168.1.5:7878".parse().unwrap();
        assert_eq!(reachable_among(v4, lan.clone()), vec![lan[0]]);
        assert_eq!(reachable_among(dual, lan.clone()), lan);
        assert_eq!(reachable_among(one, lan.clone()), vec![lan[0]]);
    }
}
