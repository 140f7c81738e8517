//! Connections per client address: one address may hold at most so many of the server's
//! `max_connections`, so that a few slow clients (four slow enrolls, say) cannot take every slot
//! and leave `/healthz` and everyone else waiting in the listen queue.
//!
//! A connection is counted when accepted, by its peer's address: an IPv4 address, or the /64 of
//! an IPv6 one (a host is given a whole /64 and may use any address in it). A trusted proxy's
//! connections carry many clients, whose addresses are known only from each request's
//! `X-Forwarded-For`, after accepting; they are not counted here (the proxy limits its own
//! clients, e.g. nginx's `limit_conn`), only by `max_connections`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Connections one address may hold unless configured otherwise.
pub const DEFAULT_PER_ADDRESS: usize = 256;

/// Open connections by client address.
pub struct AddressSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; it stops counting when dropped.
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
}

impl AddressSlots {
    /// At most `max` connections per address (at least one).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection of `address`, unless it holds its maximum.
    pub fn try_acquire(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let key = client_key(address);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: Arc::clone(self),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What connections are counted by: the IPv4 address (also when written IPv4-mapped), or the
/// IPv6 /64.
fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// The answer to a connection past its address's limit, written as it is closed.
pub fn refusal() -> Vec<u8> {
    let body = "{\"error\":{\"code\":\"rate_limited\",\"message\":\"too many connections from \
                this address; close some and try again\"}}";
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_it_back() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.try_acquire(a).unwrap();
        let _second = slots.try_acquire(a).unwrap();
        assert!(slots.try_acquire(a).is_none());
        assert!(
            slots
                .try_acquire("::ffff:10.0.0.1".parse().unwrap())
                .is_none(),
            "the same address, IPv4-mapped"
        );
        assert!(slots.try_acquire(b).is_some(), "another address");
        drop(first);
        assert!(slots.try_acquire(a).is_some());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let slots = AddressSlots::new(1);
        let _held = slots
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(slots
            .try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        let other = slots.try_acquire("2001:db8:1:3::1".parse().unwrap());
        assert!(other.is_some());
        assert_eq!(slots.lock().len(), 2);
        drop(other);
        assert_eq!(
            slots.lock().len(),
            1,
            "an address without connections is forgotten"
        );
    }

    #[test]
    fn the_refusal_is_a_whole_response() {
        let text = String::from_utf8(refusal()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "rate_limited");
    }
}
