//! The client's address when depot runs behind load balancers or reverse proxies.
//!
//! A request that arrives from a trusted proxy carries the addresses it passed through in
//! `X-Forwarded-For`, each hop appending the address it received the request from. Only the
//! entries our own proxies appended are believed: the list is walked from the right, past the
//! trusted proxies, and the first address that is not one of them is the client. Whatever lies
//! further left was written by the client itself and is never read. A request from a peer that
//! is not trusted is attributed to that peer, whatever its headers say; with no trusted proxies
//! (the default) the header is ignored altogether. This module must never let a client choose
//! the address its audit events, rate limits and check-ins are recorded under.

use axum::http::{header::HeaderName, Extensions, HeaderMap};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The networks whose `X-Forwarded-For` entries are believed. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self(networks.into_iter().map(|n| n.trunc()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; they match IPv4 networks.
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client of a request that `peer` sent us with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        // Several X-Forwarded-For fields form one list in their order (RFC 9110, 5.3).
        let entries = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&b| b == b','));
        let mut client = peer;
        for entry in entries {
            // An entry that is not an address was not written by a proxy of ours, so nothing
            // left of it can be believed: the nearest hop we trust is the best we know.
            let Some(address) = parse_entry(entry) else {
                return client;
            };
            client = address;
            if !self.contains(address) {
                return address;
            }
        }
        // Every hop was one of ours: the left-most is as far back as the chain goes.
        client
    }
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`203.0.113.7:5123`, `[2001:db8::1]:443`),
/// as some balancers write it.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// The client a trusted proxy forwarded a request for, kept in the request's extensions by the
/// connection that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardedClient(pub IpAddr);

/// The client's address: the forwarded one when a trusted proxy sent the request, else the peer.
pub(crate) fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(ForwardedClient(address)) = extensions.get::<ForwardedClient>() {
        return Some(*address);
    }
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|axum::extract::ConnectInfo(a)| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(networks.iter().map(|n| n.parse::<IpNet>().unwrap()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["198.51.100.1, 10.0.0.2"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.1/32"]);
        // The client forged the left-most entry; our two proxies appended the rest.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(trusted.client(ip("192.0.2.1"), &headers), ip("203.0.113.7"));
        // The same list split over several fields.
        let headers = forwarded(&["1.1.1.1", "203.0.113.7,10.1.2.3"]);
        assert_eq!(trusted.client(ip("192.0.2.1"), &headers), ip("203.0.113.7"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let trusted = proxies(&["127.0.0.1/32"]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_nearest_trusted_hop() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.7, unknown, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("10.0.0.2"));
        let headers = forwarded(&[""]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let trusted = proxies(&["127.0.0.1/32", "::1/128"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &forwarded(&["203.0.113.7:5123"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(ip("::1"), &forwarded(&[" [2001:db8::7]:443 "])),
            ip("2001:db8::7")
        );
        assert_eq!(
            trusted.client(ip("::1"), &forwarded(&["::ffff:198.51.100.4"])),
            ip("198.51.100.4")
        );
    }

    proptest! {
        /// Nothing a client writes into the header makes it anyone but the address our proxy
        /// saw, and an untrusted peer is never anyone but itself.
        #[test]
        fn a_client_cannot_choose_its_address(
            forged in "[ -~]{0,80}",
            client in any::<[u8; 4]>().prop_filter("not a proxy", |a| a[0] != 10),
        ) {
            let trusted = proxies(&["10.0.0.0/8"]);
            let client = IpAddr::from(client);
            let value = format!("{forged}, {client}");
            let Ok(value) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.append(&X_FORWARDED_FOR, value);
            prop_assert_eq!(trusted.client(ip("10.0.0.1"), &headers), client);
            prop_assert_eq!(trusted.client(client, &headers), client);
        }
    }
}
