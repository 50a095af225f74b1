//! Which network addresses a plugin's requests may reach. A granted origin
//! whose *name* resolves to a loopback, private, link-local (cloud metadata
//! at 169.254.169.254 among them) or otherwise non-public address is
//! refused, unless the operator allows private networks for the connector
//! (`[grants] private-networks = true`, for an on-premises pod). The check
//! is made on the very addresses the connection is made to, so a name that
//! resolves differently between a check and the connect (DNS rebinding)
//! cannot slip through. An address written in the URL itself was granted
//! as such, and is used as it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Where a plugin's requests may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Names must resolve to public addresses (the default).
    #[default]
    PublicOnly,
    /// Any address (`[grants] private-networks = true`).
    PrivateNetworksAllowed,
}

/// A name that resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to {addresses}, not a public address; plugins reach private networks only \
     where the operator allows it: add `private-networks = true` to the connector's [grants] if \
     this server is meant to be on your network"
)]
pub struct AddressRefused {
    /// The name.
    pub host: String,
    /// What it resolved to.
    pub addresses: String,
}

/// Whether `ip` is an address of the public internet: not loopback,
/// private, link-local, shared (carrier-grade NAT), unspecified, broadcast,
/// multicast, documentation or unique-local, nor an IPv4 address of those
/// kinds mapped into IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let reserved = a >= 240;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || this_network
        || benchmarking
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let site_local = first & 0xffc0 == 0xfec0;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || site_local
        || documentation)
}

impl AddressPolicy {
    /// The addresses of `netloc` (`host:port`) a connection may use: all of
    /// them for an address written as such or under
    /// [`AddressPolicy::PrivateNetworksAllowed`], else the public ones, and
    /// an [`AddressRefused`] error when there are none.
    pub fn resolve(self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(literal) = netloc.parse::<SocketAddr>() {
            return Ok(vec![literal]);
        }
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if self == AddressPolicy::PrivateNetworksAllowed {
            return Ok(all);
        }
        let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
        if public.is_empty() && !all.is_empty() {
            let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
            let addresses: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                AddressRefused {
                    host: host.to_string(),
                    addresses: addresses.join(", "),
                },
            ));
        }
        Ok(public)
    }
}

/// The [`AddressRefused`] somewhere in `error`'s chain of sources.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(refused) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<AddressRefused>())
        {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn a_name_resolving_to_loopback_is_refused_unless_private_networks_are_allowed() {
        let refused = AddressPolicy::PublicOnly
            .resolve("localhost:8443")
            .unwrap_err();
        let why = refusal_in(&refused).expect("an address refusal");
        assert_eq!(why.host, "localhost");
        assert!(
            refused.to_string().contains("private-networks = true"),
            "{refused}"
        );
        let allowed = AddressPolicy::PrivateNetworksAllowed
            .resolve("localhost:8443")
            .unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn an_address_written_in_the_url_is_used_as_granted() {
        let addrs = AddressPolicy::PublicOnly.resolve("127.0.0.1:80").unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
        let addrs = AddressPolicy::PublicOnly.resolve("[::1]:80").unwrap();
        assert_eq!(addrs, vec!["[::1]:80".parse().unwrap()]);
    }
}
