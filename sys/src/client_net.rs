//! The unit that per-client limits and failure throttling count.
//!
//! An IPv4 address is one client. An IPv6 client usually holds a whole /64
//! (SLAAC privacy addresses rotate inside it, and any host can pick as many
//! as it likes), so counting per /128 would let one attacker appear as
//! millions of clients. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
//! dual-stack listener reports) are their IPv4 address.

use std::net::{IpAddr, Ipv6Addr};

/// The network prefix length that counts as one IPv6 client.
pub const IPV6_CLIENT_PREFIX: u8 = 64;

/// `ip`'s counting unit: the IPv4 address itself, or the IPv6 /64 network
/// address.
pub fn client_unit(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_CLIENT_PREFIX));
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// [`client_unit`] of a textual address, written as a key: `a.b.c.d`, or
/// `NET/64` for IPv6. Text that is not an address is its own key.
pub fn client_unit_key(address: &str) -> String {
    match address.parse::<IpAddr>().map(client_unit) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => format!("{v6}/{IPV6_CLIENT_PREFIX}"),
        Err(_) => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_its_own_unit() {
        assert_eq!(client_unit_key("192.0.2.7"), "192.0.2.7");
        assert_ne!(client_unit_key("192.0.2.7"), client_unit_key("192.0.2.8"));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a = client_unit_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, client_unit_key("2001:db8:1:2::1"));
        assert_ne!(a, client_unit_key("2001:db8:1:3::1"));
        assert_eq!(client_unit_key("::1"), "::/64");
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        assert_eq!(client_unit_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(
            client_unit("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn other_text_is_its_own_key() {
        assert_eq!(client_unit_key("-"), "-");
        assert_eq!(client_unit_key("not an address"), "not an address");
    }
}
