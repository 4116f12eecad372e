//! Session profile ACLs: client addresses, users and groups, each with an
//! allow list, a deny list and an order. Built once per configuration load;
//! group memberships are looked up live when a decision needs them.

use crate::core::ini::parse_list;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// `allow-deny`: an allow match wins over a deny match.
    pub allow_first: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub allow_first: bool,
}

/// The ACLs of one profile. `None` for a kind means its lists are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileAcl {
    pub clients: Option<ClientRule>,
    pub users: Option<NameRule>,
    pub groups: Option<NameRule>,
}

/// An ACL list value as the original reads it: a value that is empty
/// (or a list of one empty item) counts as unset.
fn acl_list(raw: Option<&str>) -> Vec<String> {
    match raw {
        None => Vec::new(),
        Some(v) => {
            let list = parse_list(v);
            if list.len() == 1 && list[0].is_empty() {
                Vec::new()
            } else {
                list
            }
        }
    }
}

fn parse_networks(items: &[String]) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::with_capacity(items.len());
    for item in items {
        if item == "ALL" {
            nets.push("::/0".parse().map_err(|_| "::/0".to_owned())?);
            nets.push("0.0.0.0/0".parse().map_err(|_| "0.0.0.0/0".to_owned())?);
        } else if let Ok(net) = item.parse::<IpNet>() {
            nets.push(net.trunc());
        } else if let Ok(addr) = item.parse::<IpAddr>() {
            nets.push(IpNet::from(addr));
        } else {
            return Err(format!("invalid client address or network '{item}'"));
        }
    }
    Ok(nets)
}

impl ProfileAcl {
    /// `get` returns a profile's raw value for an `acl-*` key (the profile's
    /// own or inherited from `[DEFAULT]`). Problems are returned as warnings;
    /// like the original, an unparsable address list matches nothing.
    pub fn build<'a>(get: impl Fn(&str) -> Option<&'a str>) -> (ProfileAcl, Vec<String>) {
        let mut warnings = Vec::new();
        let any_order = get("acl-any-order")
            .filter(|v| !v.is_empty())
            .unwrap_or("deny-allow");
        // acl-any-order is honoured when a kind has no order (ARCHITECTURE.md D: acl-any-order).
        let allow_first = |kind: &str| {
            let order = get(&format!("acl-{kind}-order"))
                .filter(|v| !v.is_empty())
                .unwrap_or(any_order);
            order == "allow-deny"
        };
        let names = |kind: &str| {
            let allow = acl_list(get(&format!("acl-{kind}-allow")));
            let deny = acl_list(get(&format!("acl-{kind}-deny")));
            if allow.is_empty() && deny.is_empty() {
                None
            } else {
                Some(NameRule {
                    allow,
                    deny,
                    allow_first: allow_first(kind),
                })
            }
        };
        let users = names("users");
        let groups = names("groups");
        let client_allow = acl_list(get("acl-clients-allow"));
        let client_deny = acl_list(get("acl-clients-deny"));
        let clients = if client_allow.is_empty() && client_deny.is_empty() {
            None
        } else {
            let (allow, deny) = match parse_networks(&client_allow) {
                Err(e) => {
                    warnings.push(e);
                    (Vec::new(), Vec::new())
                }
                Ok(allow) => match parse_networks(&client_deny) {
                    Ok(deny) => (allow, deny),
                    Err(e) => {
                        warnings.push(e);
                        (allow, Vec::new())
                    }
                },
            };
            Some(ClientRule {
                allow,
                deny,
                allow_first: allow_first("clients"),
            })
        };
        (
            ProfileAcl {
                clients,
                users,
                groups,
            },
            warnings,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_none() && self.users.is_none() && self.groups.is_none()
    }

    /// The original's decision: a client ACL, if any, must grant; then a
    /// user grant wins; then a group grant wins unless the users denied.
    /// `user_groups` is called only when a group rule must be consulted.
    pub fn permits(
        &self,
        user: &str,
        client: Option<IpAddr>,
        user_groups: impl FnOnce(&str) -> Vec<String>,
    ) -> bool {
        if let Some(rule) = &self.clients {
            let contains = |nets: &[IpNet]| client.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
            if decide(contains(&rule.allow), contains(&rule.deny), rule.allow_first) != Some(true) {
                return false;
            }
        }
        if self.users.is_none() && self.groups.is_none() {
            return true;
        }
        let mut by_user = None;
        if let Some(rule) = &self.users {
            let listed = |list: &[String]| list.iter().any(|u| u == user || u == "ALL");
            by_user = decide(listed(&rule.allow), listed(&rule.deny), rule.allow_first);
            if by_user == Some(true) {
                return true;
            }
        }
        if let Some(rule) = &self.groups {
            let mut groups = user_groups(user);
            groups.push("ALL".to_owned());
            let listed = |list: &[String]| list.iter().any(|g| groups.contains(g));
            let by_group = decide(listed(&rule.allow), listed(&rule.deny), rule.allow_first);
            if by_group == Some(true) && by_user != Some(false) {
                return true;
            }
        }
        false
    }
}

fn decide(allowed: bool, denied: bool, allow_first: bool) -> Option<bool> {
    if allow_first {
        if allowed {
            Some(true)
        } else if denied {
            Some(false)
        } else {
            None
        }
    } else if denied {
        Some(false)
    } else if allowed {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn acl(pairs: &[(&str, &str)]) -> ProfileAcl {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (acl, warnings) = ProfileAcl::build(|k| map.get(k).map(String::as_str));
        assert!(warnings.is_empty(), "{warnings:?}");
        acl
    }

    fn groups_of(user: &str) -> Vec<String> {
        match user {
            "alice" => vec!["staff".into()],
            "bob" => vec!["staff".into(), "devs".into()],
            _ => vec![],
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn no_acls_permit_everyone() {
        let a = acl(&[("acl-users-allow", ""), ("acl-any-order", "deny-allow")]);
        assert!(a.is_empty());
        assert!(a.permits("anyone", None, groups_of));
    }

    #[test]
    fn users_allow_and_deny() {
        let a = acl(&[("acl-users-allow", "alice"), ("acl-users-deny", "ALL")]);
        // deny-allow: deny checked first, so ALL denies alice too.
        assert!(!a.permits("alice", None, groups_of));
        let a = acl(&[
            ("acl-users-allow", "alice"),
            ("acl-users-deny", "ALL"),
            ("acl-users-order", "allow-deny"),
        ]);
        assert!(a.permits("alice", None, groups_of));
        assert!(!a.permits("bob", None, groups_of));
        let a = acl(&[("acl-users-allow", "alice, carol")]);
        assert!(a.permits("carol", None, groups_of));
        assert!(!a.permits("bob", None, groups_of));
    }

    #[test]
    fn any_order_is_honoured() {
        let a = acl(&[
            ("acl-users-allow", "alice"),
            ("acl-users-deny", "ALL"),
            ("acl-any-order", "allow-deny"),
        ]);
        assert!(a.permits("alice", None, groups_of));
        // A per-kind order wins over acl-any-order.
        let a = acl(&[
            ("acl-users-allow", "alice"),
            ("acl-users-deny", "ALL"),
            ("acl-any-order", "allow-deny"),
            ("acl-users-order", "deny-allow"),
        ]);
        assert!(!a.permits("alice", None, groups_of));
    }

    #[test]
    fn groups_grant_unless_users_deny() {
        let a = acl(&[("acl-groups-allow", "staff")]);
        assert!(a.permits("alice", None, groups_of));
        assert!(!a.permits("carol", None, groups_of));
        let a = acl(&[("acl-groups-allow", "staff"), ("acl-users-deny", "bob")]);
        assert!(a.permits("alice", None, groups_of));
        assert!(!a.permits("bob", None, groups_of));
        let a = acl(&[("acl-groups-allow", "ALL"), ("acl-groups-deny", "devs")]);
        assert!(a.permits("alice", None, groups_of));
        assert!(!a.permits("bob", None, groups_of));
    }

    #[test]
    fn client_addresses() {
        let a = acl(&[
            ("acl-clients-allow", "10.0.0.0/8, 2001:db8::/32"),
            ("acl-clients-deny", "ALL"),
        ]);
        // deny-allow by default: ALL denies first.
        assert!(!a.permits("alice", ip("10.1.2.3"), groups_of));
        let a = acl(&[
            ("acl-clients-allow", "10.0.0.0/8, 2001:db8::/32, 192.168.1.7"),
            ("acl-clients-deny", "ALL"),
            ("acl-clients-order", "allow-deny"),
        ]);
        assert!(a.permits("alice", ip("10.1.2.3"), groups_of));
        assert!(a.permits("alice", ip("2001:db8::5"), groups_of));
        assert!(a.permits("alice", ip("192.168.1.7"), groups_of));
        assert!(!a.permits("alice", ip("192.168.1.8"), groups_of));
        assert!(!a.permits("alice", None, groups_of));
        // A client grant is necessary but users must still grant.
        let a = acl(&[("acl-clients-allow", "ALL"), ("acl-users-allow", "bob")]);
        assert!(!a.permits("alice", ip("127.0.0.1"), groups_of));
        assert!(a.permits("bob", ip("::1"), groups_of));
        // Host bits are ignored, like netaddr's IPSet.
        let a = acl(&[("acl-clients-allow", "127.0.0.5/8")]);
        assert!(a.permits("x", ip("127.9.9.9"), groups_of));
    }

    #[test]
    fn bad_address_matches_nothing() {
        let map: HashMap<&str, &str> = [("acl-clients-allow", "10.0.0.0/8, bogus")].into();
        let (a, warnings) = ProfileAcl::build(|k| map.get(k).copied());
        assert_eq!(warnings.len(), 1);
        assert!(!a.permits("x", ip("10.0.0.1"), groups_of));
    }
}
