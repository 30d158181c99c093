//! weft's DNS server: containers find each other by name.
//!
//! Every network's gateway address answers on port 53 (UDP and TCP) for
//! that network only: the address a query arrives on tells which network
//! asks, so one network's names never leak into another (isolation holds
//! for names too). A name is a container name or one of its aliases; A and
//! AAAA give its addresses, PTR of an address gives its container name.
//! Bare names that are not containers get NXDOMAIN here; everything else is
//! forwarded to the upstream resolvers, except from internal networks
//! (REFUSED: no way out, not even by DNS). Forwards in flight are bounded
//! per client and in all, so a flood cannot take the server's sockets.
//!
//! The server never reads the store: its owner (the `weft dns` command)
//! sends a new [`Zone`] whenever the store changes, and answers switch at
//! once; listeners open and close as networks come and go. Parsing and
//! building DNS messages is hickory's, not ours.

mod handler;
mod pending;
mod upstream;
pub mod zone;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::ServerFuture;
use tokio::sync::watch;

use handler::{NetHandler, SharedZone};
use pending::Pending;
pub use upstream::from_resolv_conf;
pub use zone::Zone;

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// An address that could not be bound (bridge not up yet) is tried again.
const REBIND: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    /// 53, except in tests and benchmarks.
    pub port: u16,
    /// Resolvers for names that are not containers, asked in order.
    pub upstreams: Vec<SocketAddr>,
}

/// Serves the zones sent on `zones` until its sender is dropped.
pub async fn serve(config: Config, mut zones: watch::Receiver<Arc<Zone>>) {
    let shared: SharedZone = Arc::new(RwLock::new(zones.borrow().clone()));
    let upstreams = Arc::new(config.upstreams);
    let in_flight = Pending::new(pending::PER_CLIENT, pending::TOTAL);
    let mut servers: HashMap<IpAddr, (String, ServerFuture<NetHandler>)> = HashMap::new();
    loop {
        let zone = zones.borrow_and_update().clone();
        *shared.write().unwrap_or_else(std::sync::PoisonError::into_inner) = zone.clone();
        servers.retain(|addr, (net, srv)| {
            let keep = zone.listen.iter().any(|(a, n)| a == addr && n == net);
            if !keep {
                tracing::info!("network {net}: no longer serving {addr}");
                srv.shutdown_token().cancel();
            }
            keep
        });
        let mut pending = false;
        for (addr, net) in &zone.listen {
            if servers.contains_key(addr) {
                continue;
            }
            let handler = NetHandler {
                network: net.clone(),
                zone: shared.clone(),
                upstreams: upstreams.clone(),
                pending: in_flight.clone(),
            };
            match listen(*addr, config.port, handler) {
                Ok(s) => {
                    tracing::info!(
                        "network {net}: serving DNS on {}",
                        SocketAddr::new(*addr, config.port)
                    );
                    servers.insert(*addr, (net.clone(), s));
                }
                Err(e) => {
                    tracing::debug!("network {net}: cannot listen on {addr} yet: {e}");
                    pending = true;
                }
            }
        }
        tokio::select! {
            changed = zones.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(REBIND), if pending => {}
        }
    }
    for (_, (_, mut s)) in servers {
        let _ = s.shutdown_gracefully().await;
    }
}

fn listen(
    addr: IpAddr,
    port: u16,
    handler: NetHandler,
) -> std::io::Result<ServerFuture<NetHandler>> {
    let at = SocketAddr::new(addr, port);
    let udp = std::net::UdpSocket::bind(at)?;
    let tcp = std::net::TcpListener::bind(at)?;
    let mut server = ServerFuture::new(handler);
    server.register_socket_std(udp)?;
    server.register_listener_std(tcp, TCP_IDLE)?;
    Ok(server)
}
