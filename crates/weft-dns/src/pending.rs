//! Bounds on forwarded queries in flight. Each holds a socket until the
//! upstream answers or its patience runs out, so a client asking many
//! names of a silent upstream would otherwise take every file descriptor
//! of the server (and with them its TCP listeners and everyone's answers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Forwards in flight for one client address. A resolver library asks a
/// few names at once (A and AAAA, a search list), a busy client some
/// dozens; beyond this the client is answered SERVFAIL at once.
pub(crate) const PER_CLIENT: usize = 32;
/// Forwards in flight for the whole server: the bound on its sockets even
/// when many addresses ask (a container can forge its neighbours'
/// source addresses), well under the usual 1024 open files.
pub(crate) const TOTAL: usize = 512;

/// Counts of forwards in flight, per client and in all.
pub(crate) struct Pending {
    per_client: usize,
    total: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One forward in flight; it ends when this is dropped.
pub(crate) struct Permit {
    pending: Arc<Pending>,
    client: IpAddr,
}

impl Pending {
    pub(crate) fn new(per_client: usize, total: usize) -> Arc<Pending> {
        Arc::new(Pending { per_client, total, state: Mutex::default() })
    }

    /// A permit to forward a query of `client`, or None when it (or the
    /// server) has as many in flight as it may.
    pub(crate) fn take(self: &Arc<Self>, client: IpAddr) -> Option<Permit> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total >= self.total {
            return None;
        }
        let n = s.by_client.entry(client).or_default();
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        s.total += 1;
        Some(Permit { pending: Arc::clone(self), client })
    }

    #[cfg(test)]
    fn in_flight(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.total, s.by_client.len())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.pending.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.total -= 1;
        if let Some(n) = s.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                s.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_client_and_in_all_and_freed_on_drop() {
        let p = Pending::new(2, 3);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = p.take(ip("10.0.0.2")).unwrap();
        let a2 = p.take(ip("10.0.0.2")).unwrap();
        assert!(p.take(ip("10.0.0.2")).is_none(), "per client");
        let b1 = p.take(ip("10.0.0.3")).unwrap();
        assert!(p.take(ip("10.0.0.4")).is_none(), "in all");
        drop(a1);
        let a3 = p.take(ip("10.0.0.2")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(p.in_flight(), (0, 0), "nothing left behind");
    }
}
