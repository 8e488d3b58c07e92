//! Our blocking LongPort server with the tests' echo policy, on a thread: an Auth with the
//! test token is accepted (any other is refused with "invalid token"), a Reconnect is accepted,
//! every business request is echoed
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tether_net::longport::{ServerEvent, Status};
use tether_net_drivers::blocking::{ConnId, Ctl, Grant, ServerInput, ServerItem, TcpServer};
use tether_net_drivers::random_session_id;

/// Lifetime of the sessions the policy grants
pub const SESSION_MS: i64 = 3_600_000;

/// What the policy does when the server refuses one of its answers
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    /// Fail the test (the server thread panics; joining it fails)
    Panic,
    /// Go on (clients under attack may be gone before their answer)
    Ignore,
}

/// A session of `SESSION_MS` from now, with a random id
pub fn grant<const P: usize, const S: usize>(ctl: &Ctl<'_, P, S>) -> Grant {
    Grant::new(random_session_id(), ctl.wall_clock_ms() + SESSION_MS)
}

/// The policy for one item; the peer of a `Connected` event (a login or a reconnect)
pub fn answer<const P: usize, const S: usize>(
    ctl: &mut Ctl<'_, P, S>,
    item: ServerItem,
    token: &str,
    refusals: Refusals,
) -> Option<ConnId> {
    let r = match item {
        ServerItem::Input(ServerInput::Auth { peer, token: t, .. }) if t == token => {
            let g = grant(ctl);
            ctl.accept_auth(peer, g).map(drop)
        }
        ServerItem::Input(ServerInput::Auth { peer, .. }) => {
            ctl.reject_auth(peer, Status::Unauthenticated, 401, "invalid token")
        }
        ServerItem::Input(ServerInput::Reconnect { peer, .. }) => {
            let g = grant(ctl);
            ctl.accept_reconnect(peer, g).map(drop)
        }
        ServerItem::Input(ServerInput::Request {
            peer,
            request_id,
            cmd,
            body,
            ..
        }) => ctl.respond(peer, cmd, request_id, Status::Success, &body),
        ServerItem::Event(ServerEvent::Connected { peer, .. }) => return Some(peer),
        _ => Ok(()),
    };
    if let (Err(e), Refusals::Panic) = (r, refusals) {
        panic!("the server refused the policy's answer: {e}");
    }
    None
}

/// The server running the policy on its own thread until [`Running::stop`]
pub struct Running {
    stop: Arc<AtomicBool>,
    drop_first: Arc<AtomicBool>,
    thread: JoinHandle<(TcpServer, Vec<ConnId>)>,
}

impl Running {
    /// Run `server` with the policy for `token`, in turns of 20 ms
    pub fn start(mut server: TcpServer, token: &'static str, refusals: Refusals) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let drop_first = Arc::new(AtomicBool::new(false));
        let (s, d) = (stop.clone(), drop_first.clone());
        let thread = std::thread::spawn(move || {
            let mut logins = Vec::new();
            while !s.load(Ordering::Relaxed) {
                server
                    .run(Duration::from_millis(20), |ctl, item| {
                        logins.extend(answer(ctl, item, token, refusals));
                        None::<()>
                    })
                    .unwrap();
                if d.swap(false, Ordering::Relaxed) {
                    server.command(|ctl| ctl.drop_connection(logins[0]));
                }
            }
            (server, logins)
        });
        Running {
            stop,
            drop_first,
            thread,
        }
    }

    /// Drop the first login's transport without a word, at the end of the current turn (the
    /// client reconnects)
    pub fn drop_first(&self) {
        self.drop_first.store(true, Ordering::Relaxed);
    }

    /// Stop the thread: the server, and the peers that logged in (and reconnected), in order
    pub fn stop(self) -> (TcpServer, Vec<ConnId>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the server thread")
    }
}
