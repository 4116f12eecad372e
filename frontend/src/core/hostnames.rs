//! Host name comparison as the original does it: names may be compared
//! without their (common) domain part.

use crate::core::profiles::valid_ipv4;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;

pub fn is_ip(s: &str) -> bool {
    valid_ipv4(s) || s.parse::<Ipv6Addr>().is_ok()
}

/// Short names (IP addresses left out) and the distinct domains seen. With
/// more than one domain the names are returned unchanged.
pub fn normalize(servers: &[String]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    for server in servers {
        if is_ip(server) {
            continue;
        }
        let (host, domain) = server.split_once('.').unwrap_or((server.as_str(), ""));
        names.push(host.to_owned());
        if !domain.is_empty() && !domains.iter().any(|d| d == domain) {
            domains.push(domain.to_owned());
        }
    }
    if domains.len() > 1 {
        return (servers.to_vec(), domains);
    }
    (names, domains)
}

/// Names present in both lists (compared without domains where that is
/// unambiguous), sorted.
pub fn matching(a: &[String], b: &[String]) -> Vec<String> {
    let mut result: BTreeSet<String> = BTreeSet::new();
    let (a_norm, a_domains) = normalize(a);
    if a_domains.len() <= 1 {
        let (b_norm, b_domains) = normalize(b);
        if b_domains.len() <= 1 && (a_domains.is_empty() || b_domains.is_empty()) {
            result = a_norm.iter().filter(|n| b_norm.contains(n)).cloned().collect();
        }
    }
    if result.is_empty() {
        result = a.iter().filter(|n| b.contains(n)).cloned().collect();
    }
    result.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalizing_and_matching() {
        assert_eq!(
            normalize(&v(&["a.example.org", "b.example.org", "10.0.0.1"])),
            (v(&["a", "b"]), v(&["example.org"]))
        );
        assert_eq!(
            normalize(&v(&["a.x.org", "b.y.org"])).0,
            v(&["a.x.org", "b.y.org"])
        );
        assert_eq!(matching(&v(&["h1", "h2", "h3"]), &v(&["h2"])), v(&["h2"]));
        assert_eq!(
            matching(&v(&["h1.example.org", "h2.example.org"]), &v(&["h2"])),
            v(&["h2"])
        );
        assert_eq!(matching(&v(&["h1", "h2"]), &v(&["h9"])), Vec::<String>::new());
    }
}
