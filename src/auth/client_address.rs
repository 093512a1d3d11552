//! The client's address: the TCP peer, or — only when that peer is a configured trusted proxy — the
//! nearest untrusted address in `X-Forwarded-For`. Nobody else's `X-Forwarded-For` is believed.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    if !trusted(&peer) {
        return peer;
    }
    // Walk the chain from the nearest hop outwards; the first address not ours is the client.
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(address) => {
                client = address;
                if !trusted(&address) {
                    break;
                }
            }
            // A malformed entry ends what can be believed.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for".parse().unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(ip("203.0.113.9"), &forwarded("196.201.214.200"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("203.0.113.9"), &forwarded("196.201.214.200"), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_forwards_the_nearest_untrusted_hop() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let headers = forwarded("1.2.3.4, 196.201.214.200, 10.0.0.7");
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("196.201.214.200")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &forwarded("nonsense, 10.0.0.9"), &trusted),
            ip("10.0.0.9")
        );
    }
}
