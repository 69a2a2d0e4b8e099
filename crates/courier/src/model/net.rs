//! Client addresses: which proxies to believe, and the key that per-address limits count under.
//!
//! `X-Forwarded-For` is a list each proxy appends its peer to, so only its right end is
//! written by machines we trust; everything to the left of the first untrusted hop may be made
//! up by the client. The client is therefore the rightmost entry that is not a trusted proxy,
//! never the leftmost (which a client writes itself to get around every per-address limit).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a connection from `peer` whose request carried `forwarded_for` (each
    /// `X-Forwarded-For` header value, in order). Walks from the right while the hop is a
    /// trusted proxy; the first hop that is not is the client. A hop that does not parse ends
    /// the walk at the last address known (it cannot be believed, and neither can anything to
    /// its left); a list of trusted proxies only gives its leftmost.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443` or `1.2.3.4:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })?;
    Some(canonical(ip))
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// What a per-address limit counts under: the IPv4 address, or the IPv6 /64 (one customer's
/// network; anyone holding one has 2^64 addresses to rotate through).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        // The client wrote "6.6.6.6" itself; nginx appended the address it saw.
        assert_eq!(
            trusted.client(peer, ["6.6.6.6, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two proxies: the inner one is skipped too.
        assert_eq!(
            trusted.client(peer, ["6.6.6.6, 203.0.113.7, 10.1.2.3"]),
            ip("203.0.113.7")
        );
        // Several header lines read as one list.
        assert_eq!(
            trusted.client(peer, ["6.6.6.6", "203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(peer, ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), ["10.0.0.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), ["203.0.113.7"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_stops_at_the_last_known_hop() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.client(peer, ["203.0.113.7, junk, 10.0.0.5"]),
            ip("10.0.0.5")
        );
        assert_eq!(trusted.client(peer, ["10.0.0.9, 10.0.0.5"]), ip("10.0.0.9"));
        assert_eq!(trusted.client(peer, std::iter::empty()), peer);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), ["203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ipv6_addresses_share_a_limit_per_64_and_ipv4_per_address() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }
}
