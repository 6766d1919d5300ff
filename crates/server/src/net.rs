//! Network addresses: which are on this machine or a private network, and which peers are
//! proxies trusted to say who their client is.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// Whether `ip` is on this machine or a private network: loopback, unspecified, private (RFC
/// 1918, IPv6 unique local), shared (RFC 6598), link-local (cloud metadata services live there),
/// also written as an IPv4-mapped IPv6 address.
pub fn is_local_address(ip: IpAddr) -> bool {
    let v4 = |ip: std::net::Ipv4Addr| {
        let [a, b, ..] = ip.octets();
        ip.is_loopback()
            || ip.is_unspecified()
            || ip.is_private()
            || ip.is_link_local()
            || (a == 100 && (64..128).contains(&b))
    };
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
                || ip.to_ipv4_mapped().is_some_and(v4)
        }
    }
}

/// The peers whose `X-Forwarded-For` and country headers are believed (`--trusted-proxies`):
/// `local` (this machine and private networks: a load balancer beside the suite), `none`, or
/// addresses and networks (`203.0.113.7`, `198.51.100.0/24`, `2001:db8::/32`), comma-separated,
/// `local` among them if wanted. A client talking to the suite directly can otherwise claim any
/// address and country.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies {
    local: bool,
    nets: Arc<[Net]>,
}

/// An address and how many of its leading bits a network shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u32,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (net.to_bits() ^ ip.to_bits())
                    .checked_shr(32 - self.prefix)
                    .unwrap_or(0)
                    == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                (net.to_bits() ^ ip.to_bits())
                    .checked_shr(128 - self.prefix)
                    .unwrap_or(0)
                    == 0
            }
            _ => false,
        }
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<TrustedProxies, String> {
        let mut trusted = TrustedProxies::none();
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim) {
            match entry {
                "local" => trusted.local = true,
                "none" => {}
                _ => nets.push(net(entry)?),
            }
        }
        if text.split(',').any(|e| e.trim() == "none") && (trusted.local || !nets.is_empty()) {
            return Err("`none` cannot be given with other proxies".to_owned());
        }
        trusted.nets = nets.into();
        Ok(trusted)
    }
}

/// One entry of [`TrustedProxies`]: an address, or a network as `address/prefix`.
fn net(entry: &str) -> Result<Net, String> {
    let invalid = || {
        format!(
            "{entry:?} is not an address or a network (e.g. 10.1.2.3, 10.0.0.0/8, 2001:db8::/32), \
             `local` or `none`"
        )
    };
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let written = IpAddr::from_str(addr).map_err(|_| invalid())?;
    let bits = if written.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix.parse::<u32>().map_err(|_| invalid())?,
        None => bits,
    };
    if prefix > bits {
        return Err(format!("{entry:?}: a prefix of at most {bits} bits"));
    }
    // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one: peers are compared as
    // IPv4 addresses.
    let addr = written.to_canonical();
    let prefix = if addr.is_ipv4() && written.is_ipv6() {
        // Shorter, it would reach past the mapped range: surely a slip for the IPv4 prefix.
        prefix.checked_sub(96).ok_or_else(|| {
            format!("{entry:?}: an IPv4-mapped network needs a prefix of 96 bits or more")
        })?
    } else {
        prefix
    };
    Ok(Net { addr, prefix })
}

impl TrustedProxies {
    /// No proxy: every client is its peer.
    pub fn none() -> TrustedProxies {
        TrustedProxies {
            local: false,
            nets: Arc::new([]),
        }
    }

    /// Only this machine and private networks (the default).
    pub fn local() -> TrustedProxies {
        TrustedProxies {
            local: true,
            nets: Arc::new([]),
        }
    }

    /// Whether a request from `peer` may say who its client is.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        (self.local && is_local_address(peer)) || self.nets.iter().any(|net| net.contains(peer))
    }

    /// The client of a request that came from `peer` with `forwarded` (its `X-Forwarded-For`
    /// lines joined by commas in order, the nearest hop last): `peer` itself unless it is a
    /// trusted proxy, else the nearest hop that is not one (the farthest, when all are; the last
    /// trusted one, when the next is not an address).
    pub fn client(&self, peer: IpAddr, forwarded: &str) -> IpAddr {
        let mut client = peer.to_canonical();
        if forwarded.is_empty() {
            return client;
        }
        for hop in forwarded.rsplit(',') {
            if !self.trusts(client) {
                break;
            }
            match hop_address(hop) {
                Some(hop) => client = hop,
                None => break,
            }
        }
        client
    }
}

/// One hop of `X-Forwarded-For`: an address, perhaps with a port or in brackets
/// (`[2001:db8::1]:443`, `[2001:db8::1]`, `203.0.113.7:80`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let bare = hop
        .strip_prefix('[')
        .and_then(|hop| hop.strip_suffix(']'))
        .unwrap_or(hop);
    IpAddr::from_str(bare)
        .ok()
        .or_else(|| std::net::SocketAddr::from_str(hop).ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn proxies(text: &str) -> TrustedProxies {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn local_addresses_are_this_machines_and_private_networks() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local_address(ip(local)), "{local}");
        }
        for public in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!is_local_address(ip(public)), "{public}");
        }
    }

    #[test]
    fn trusted_proxies_are_local_none_or_networks() {
        let local = proxies("local");
        assert_eq!(local, TrustedProxies::local());
        assert!(local.trusts(ip("10.0.0.5")) && local.trusts(ip("::ffff:127.0.0.1")));
        assert!(!local.trusts(ip("203.0.113.7")));
        let none = proxies("none");
        assert!(!none.trusts(ip("127.0.0.1")));
        let nets = proxies("198.51.100.0/24, 2001:db8::/32,203.0.113.7");
        assert!(nets.trusts(ip("198.51.100.200")) && !nets.trusts(ip("198.51.101.1")));
        assert!(nets.trusts(ip("2001:db8:ffff::1")) && !nets.trusts(ip("2001:db9::1")));
        assert!(nets.trusts(ip("203.0.113.7")) && !nets.trusts(ip("203.0.113.8")));
        assert!(
            nets.trusts(ip("::ffff:198.51.100.1")),
            "an IPv4-mapped peer"
        );
        assert!(!nets.trusts(ip("10.0.0.1")), "local only when asked for");
        assert!(proxies("local,203.0.113.0/24").trusts(ip("10.0.0.1")));
        assert!(proxies("0.0.0.0/0").trusts(ip("8.8.8.8")));
        let mapped = proxies("::ffff:10.0.0.0/104");
        assert!(mapped.trusts(ip("10.200.0.1")) && !mapped.trusts(ip("11.0.0.1")));
        for bad in [
            "",
            "lan",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/x",
            "none,local",
            "::ffff:203.0.113.0/24",
        ] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_nearest_hop_no_trusted_proxy_vouches_past() {
        let local = TrustedProxies::local();
        // Straight from the internet: the peer, whatever it claims.
        assert_eq!(
            local.client(ip("203.0.113.7"), "198.51.100.1"),
            ip("203.0.113.7")
        );
        // Through a local load balancer: the address it saw.
        assert_eq!(
            local.client(ip("10.0.0.2"), "198.51.100.1"),
            ip("198.51.100.1")
        );
        // A client's own claim ahead of what the balancer saw is not believed.
        assert_eq!(
            local.client(ip("10.0.0.2"), "1.1.1.1, 198.51.100.1"),
            ip("198.51.100.1")
        );
        // Two proxies deep, ports and spaces allowed.
        assert_eq!(
            local.client(ip("127.0.0.1"), "[2001:db8::9]:443 , 10.0.0.3:80"),
            ip("2001:db8::9")
        );
        // All hops trusted: the farthest; no header, or a hop that is not an address: the last
        // trusted one.
        assert_eq!(local.client(ip("127.0.0.1"), "10.0.0.3"), ip("10.0.0.3"));
        assert_eq!(local.client(ip("127.0.0.1"), ""), ip("127.0.0.1"));
        assert_eq!(
            local.client(ip("127.0.0.1"), "unknown, 10.0.0.3"),
            ip("10.0.0.3")
        );
        assert_eq!(
            local.client(ip("127.0.0.1"), "[2001:db8::7]"),
            ip("2001:db8::7")
        );
        assert_eq!(local.client(ip("127.0.0.1"), "[1.2.3.4"), ip("127.0.0.1"));
        assert_eq!(
            TrustedProxies::none().client(ip("10.0.0.2"), "198.51.100.1"),
            ip("10.0.0.2")
        );
    }
}
