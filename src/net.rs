//! This machine's network addresses, to tell the other person what to type.

use std::net::IpAddr;

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
