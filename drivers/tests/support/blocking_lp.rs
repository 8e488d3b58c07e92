//! The blocking LongPort drivers' test helpers: a server on 127.0.0.1, a client that reconnects
//! fast, running a client until something happens, the wall clock
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials, ServerConfig};
use tether_net_drivers::blocking::{Input, ServerLimits, TcpClient, TcpServer};

/// Our blocking server on 127.0.0.1 with these per-connection limits, and its address
pub fn server(limits: ServerLimits) -> (TcpServer, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let s = TcpServer::with_capacities(listener, ServerConfig::new(), limits).unwrap();
    (s, addr)
}

/// A client that reconnects fast (10 ms back-off), told to connect with `token`
pub fn client(addr: SocketAddr, token: &str) -> TcpClient {
    let config = ClientConfig::tcp()
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_secs(1));
    let mut d = TcpClient::new(Client::new(config), addr).unwrap();
    d.command(|c, now| c.connect(now, Credentials::new(token)))
        .unwrap();
    d
}

/// Run the client until `f` returns `Some` (at most 10 s)
pub fn until<R>(
    d: &mut TcpClient,
    mut f: impl for<'a> FnMut(Input<'a, Client>) -> Option<R>,
) -> Option<R> {
    d.run(Duration::from_secs(10), |_, _, i| f(i)).unwrap()
}

/// Run the client until its login succeeded (panics if it failed or took over 10 s)
pub fn logged_in(d: &mut TcpClient) {
    let up = until(d, |i| match i {
        Input::Event(e @ ClientEvent::Connected { .. }) => Some(Ok(e)),
        Input::Event(e @ (ClientEvent::LoginFailed { .. } | ClientEvent::Disconnected { .. })) => {
            Some(Err(e))
        }
        _ => None,
    });
    assert!(matches!(up, Some(Ok(_))), "no login: {up:?}");
}

/// Unix milliseconds of the system clock
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
