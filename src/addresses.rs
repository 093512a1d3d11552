//! Which addresses delivery may connect to. An endpoint URL is the merchant's, or whoever holds an admin
//! token: left unchecked it would make the service post to the cloud's metadata service, to a database's
//! HTTP port inside the network, or to this machine. So every address is classified against the
//! special-purpose ranges (IANA's IPv4 and IPv6 registries, the cloud metadata addresses), with the IPv6
//! forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4) judged by the address they carry, and the
//! configured [`AddressPolicy`] says which classes may be reached.
//!
//! The check runs when an endpoint is registered (a helpful early refusal) and again at every connection,
//! through [`Guarded`], the resolver of the delivery client: a name that resolves to a public address at
//! registration and inside the network later (DNS rebinding) is refused then. Names are looked up through
//! [`Names`], so tests can change a name's answer between the two.
//!
//! A table rather than std's `Ipv4Addr::is_global` (unstable) or a crate: the ranges are few, fixed by
//! RFCs, and each row says why it is refused in the message the merchant sees. std's stable predicates
//! (`is_private`, `is_loopback`, `is_unique_local`, …) are checked against the table in the tests.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;
use ipnet::{Ipv4Net, Ipv6Net};

/// What an address is, as far as delivery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// On the public internet.
    Public,
    /// This machine: 127.0.0.0/8, ::1 (and ::ffff:127.0.0.0/104, the same sockets).
    Loopback,
    /// Any other special-purpose range (private, link-local, documentation, multicast, …): the table's
    /// description of it, naming the range.
    Special(&'static str),
    /// An IPv6 address that a gateway turns into an IPv4 address that is not public: how it is
    /// translated (`NAT64 (64:ff9b::/96)`) and the IPv4 address.
    Carries { how: &'static str, ipv4: Ipv4Addr },
}

impl fmt::Display for Class {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Class::Public => formatter.write_str("a public address"),
            Class::Loopback => formatter.write_str("loopback (this machine)"),
            Class::Special(what) => formatter.write_str(what),
            Class::Carries { how, ipv4 } => {
                write!(formatter, "{how} of {ipv4}, {}", classify_v4(*ipv4))
            }
        }
    }
}

/// IPv4's special-purpose ranges (RFC 6890 and IANA's registry), and the metadata addresses that are not
/// in any of them. Looked up in order: the first row that holds the address names it. Loopback
/// (127.0.0.0/8) is [`Class::Loopback`], not a row. Left public on purpose: the registry's globally
/// reachable anycast ranges (AS112 192.31.196.0/24 and 192.175.48.0/24, AMT 192.52.193.0/24).
const IPV4_SPECIAL: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "\"this network\" (0.0.0.0/8)"),
    (v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space (100.64.0.0/10, carrier-grade NAT; Alibaba Cloud's metadata service is 100.100.100.200)",
    ),
    (
        v4(169, 254, 0, 0, 16),
        "link-local (169.254.0.0/16, where cloud metadata services answer: 169.254.169.254)",
    ),
    (v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments (192.0.0.0/24)"),
    (v4(192, 0, 2, 0, 24), "documentation (192.0.2.0/24)"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast (192.88.99.0/24, deprecated)"),
    (v4(192, 168, 0, 0, 16), "private (192.168.0.0/16)"),
    (v4(198, 18, 0, 0, 15), "benchmarking (198.18.0.0/15)"),
    (v4(198, 51, 100, 0, 24), "documentation (198.51.100.0/24)"),
    (v4(203, 0, 113, 0, 24), "documentation (203.0.113.0/24)"),
    (v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"),
    (v4(255, 255, 255, 255, 32), "broadcast (255.255.255.255)"),
    (v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
    // A public address, but inside Azure it is the platform's own (metadata, health, DNS): never a
    // merchant's endpoint.
    (v4(168, 63, 129, 16, 32), "Azure's platform address (168.63.129.16)"),
];

/// IPv6's special-purpose ranges, in order as [`IPV4_SPECIAL`]. The forms that carry an IPv4 address
/// (IPv4-mapped, NAT64, 6to4) are judged before this table, by what they carry; ::1 is
/// [`Class::Loopback`]. Anything outside global unicast (2000::/3) that no row names is refused too (see
/// [`classify_v6`]). Left public on purpose: AS112's 2620:4f:8000::/48.
const IPV6_SPECIAL: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified (::)"),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (::/96, deprecated)",
    ),
    (
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        "IPv4-translated (::ffff:0:0:0/96)",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (100::/64)",
    ),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo (2001::/32)"),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments (2001::/23: benchmarking, ORCHID, …)",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (2001:db8::/32)",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (3fff::/20)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local (fc00::/7, where AWS's metadata service answers: fd00:ec2::254)",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local (fe80::/10)",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (fec0::/10, deprecated)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast (ff00::/8)"),
];

/// The only IPv6 space allocated for public unicast; anything else no row names is refused.
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const NOT_GLOBAL_UNICAST: &str = "outside global unicast (2000::/3)";

const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const NAT64_LOCAL: Ipv6Net = v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// What `ip` is (see [`Class`]).
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    if ip.is_loopback() {
        return Class::Loopback;
    }
    IPV4_SPECIAL
        .iter()
        .find(|(range, _)| range.contains(&ip))
        .map_or(Class::Public, |(_, what)| Class::Special(what))
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    if ip.is_loopback() {
        return Class::Loopback;
    }
    // The same socket as the IPv4 address (a dual-stack socket): loopback stays loopback.
    if let Some(ipv4) = ip.to_ipv4_mapped() {
        return classify_v4(ipv4);
    }
    // Translated by a gateway to the IPv4 address they carry: public only when that one is.
    for (how, carried) in [
        (
            "NAT64 (64:ff9b::/96)",
            NAT64.contains(&ip).then(|| vec![low_32(ip)]),
        ),
        (
            "NAT64 (64:ff9b:1::/48)",
            NAT64_LOCAL.contains(&ip).then(|| local_nat64(ip)),
        ),
        (
            "6to4 (2002::/16)",
            SIX_TO_FOUR.contains(&ip).then(|| vec![six_to_four(ip)]),
        ),
    ] {
        let Some(carried) = carried else { continue };
        return carried
            .into_iter()
            .find_map(|ipv4| match classify_v4(ipv4) {
                Class::Public => None,
                _ => Some(Class::Carries { how, ipv4 }),
            })
            .unwrap_or(Class::Public);
    }
    if let Some((_, what)) = IPV6_SPECIAL.iter().find(|(range, _)| range.contains(&ip)) {
        return Class::Special(what);
    }
    if GLOBAL_UNICAST.contains(&ip) {
        Class::Public
    } else {
        Class::Special(NOT_GLOBAL_UNICAST)
    }
}

fn low_32(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., a, b, c, d] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

fn six_to_four(ip: Ipv6Addr) -> Ipv4Addr {
    let [_, _, a, b, c, d, ..] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

/// The IPv4 addresses a local-use NAT64 address may carry. The network picks the prefix's length inside
/// 64:ff9b:1::/48 (RFC 8215), and RFC 6052 puts the IPv4 address at a different place for each: always
/// read as /96 (the usual: the last 32 bits), and also as /48, /56 or /64 when the address has that
/// length's form (the u octet, bits 64-71, and the suffix zero). Every reading must be public: an
/// address cannot pass for 8.8.8.8 under one length while a /64 gateway takes it to 169.254.169.254.
fn local_nat64(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bytes = ip.octets();
    let mut carried = Vec::new();
    // Where /48, /56 and /64 put the IPv4 octets (byte 8, the u octet, is skipped).
    for at in [[6, 7, 9, 10], [7, 9, 10, 11], [9, 10, 11, 12]] {
        let suffix_is_zero = bytes[at[3] + 1..].iter().all(|byte| *byte == 0);
        if bytes[8] == 0 && suffix_is_zero {
            carried.push(Ipv4Addr::new(
                bytes[at[0]],
                bytes[at[1]],
                bytes[at[2]],
                bytes[at[3]],
            ));
        }
    }
    // Last: a refusal names the reading the address has the form of.
    carried.push(low_32(ip));
    carried
}

/// Which classes endpoints may reach: `delivery.allow_loopback` and `delivery.allow_private_networks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Production: public addresses only.
    PublicOnly,
    /// A developer's machine (`config/local.toml`): public addresses and this machine's loopback, still
    /// never private ranges, link-local or metadata addresses.
    PublicAndLoopback,
    /// Anything (`delivery.allow_private_networks`): for those whose endpoints really live in a private
    /// network. The delivery client then has no guard at all.
    Anywhere,
}

impl AddressPolicy {
    pub fn new(allow_private_networks: bool, allow_loopback: bool) -> Self {
        match (allow_private_networks, allow_loopback) {
            (true, _) => Self::Anywhere,
            (false, true) => Self::PublicAndLoopback,
            (false, false) => Self::PublicOnly,
        }
    }

    /// Whether `ip` may be reached; if not, why (the message the merchant and the attempt log see).
    pub fn check(self, ip: IpAddr) -> Result<(), String> {
        self.refusal(ip)
            .map_or(Ok(()), |why| Err(format!("{ip} is {why}")))
    }

    /// Like [`AddressPolicy::check`], for an address `host` resolved to.
    pub fn check_resolved(self, host: &str, ip: IpAddr) -> Result<(), String> {
        self.refusal(ip).map_or(Ok(()), |why| {
            Err(format!("{host} resolves to {ip}, which is {why}"))
        })
    }

    /// Why `ip` is refused (`private (10.0.0.0/8): endpoints must be public`), or nothing.
    fn refusal(self, ip: IpAddr) -> Option<String> {
        let class = classify(ip);
        match (self, class) {
            (Self::Anywhere, _) | (_, Class::Public) => None,
            (Self::PublicAndLoopback, Class::Loopback) => None,
            (Self::PublicOnly, Class::Loopback) => Some(format!(
                "{class}: endpoints must be public (delivery.allow_loopback allows loopback, for local development)"
            )),
            (Self::PublicOnly, class) => Some(format!("{class}: endpoints must be public")),
            (Self::PublicAndLoopback, class) => {
                Some(format!("{class}: endpoints must be public or loopback"))
            }
        }
    }

    /// Refuses a URL whose host is a literal address the policy does not allow (names are checked as
    /// they resolve). The delivery client's resolver is not asked about literal addresses, so this runs
    /// before every request too.
    pub fn check_literal_host(self, url: &str) -> Result<(), String> {
        match literal_host(url) {
            Some(ip) => self.check(ip),
            None => Ok(()),
        }
    }

    /// Checks a URL's host as it resolves now: its literal address, or every address its name resolves
    /// to. A name that does not resolve passes: it is checked again at every connection.
    pub async fn check_host(self, url: &str, names: &dyn Names) -> Result<(), String> {
        if self == Self::Anywhere {
            return Ok(());
        }
        self.check_literal_host(url)?;
        let Ok(uri) = url.parse::<actix_web::http::Uri>() else {
            return Ok(());
        };
        let host = uri.host().unwrap_or_default();
        if literal_host(url).is_some() || host.is_empty() {
            return Ok(());
        }
        let port = uri.port_u16().unwrap_or(443);
        let resolved = names.lookup(host, port).await.unwrap_or_default();
        for address in resolved {
            self.check_resolved(host, address.ip())?;
        }
        Ok(())
    }
}

/// The literal address a URL's host is, if it is one (`[…]` stripped).
fn literal_host(url: &str) -> Option<IpAddr> {
    let uri: actix_web::http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Looks names up: the system's resolver in service, a table the test changes in tests.
pub trait Names: Send + Sync {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking threads).
pub struct SystemNames;

impl Names for SystemNames {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The delivery client's resolver: looks the name up and refuses the connection when any address it
/// resolves to is not allowed — at every connection, so a name re-pointed inside the network is refused
/// then. Any, not the first: the connector tries the addresses in turn.
pub struct Guarded {
    pub policy: AddressPolicy,
    pub names: Arc<dyn Names>,
}

impl Resolve for Guarded {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let addresses = self.names.lookup(host, port).await?;
            for address in &addresses {
                self.policy.check_resolved(host, address.ip())?;
            }
            Ok(addresses)
        })
    }
}

/// Names answered from a table that can change at any time: for tests, where a name points elsewhere
/// between an endpoint's registration and its delivery. A name not in the table does not resolve.
#[derive(Debug, Default)]
pub struct NamesTable(std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>);

impl NamesTable {
    /// From now on `host` resolves to `addresses`.
    pub fn set(&self, host: &str, addresses: &[IpAddr]) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(host.to_owned(), addresses.to_vec());
    }
}

impl Names for NamesTable {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let answer = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(host)
            .map(|addresses| {
                addresses
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect()
            })
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} is not in the table"),
                )
            });
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(test)]
mod tests;
