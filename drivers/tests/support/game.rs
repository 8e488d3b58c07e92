//! The blocking game client driver, as the tests use it
#![allow(dead_code)]

use std::time::Duration;

use tether_net::game::{Client, ClientApp, ClientEvent, CloseCause};
use tether_net_drivers::blocking::{Input, UdpDriver};

/// Run until the server closes us (within `limit`); the CLOSE's reason
pub fn server_close_reason(d: &mut UdpDriver<Client>, limit: Duration) -> String {
    let mut reason = None;
    let closed = d
        .run(limit, |_, _, i| match i {
            Input::App(_, ClientApp::Close { reason: r }) => {
                reason = Some(r.to_string());
                None
            }
            Input::Event(ClientEvent::Closed { cause }) => Some(cause),
            _ => None,
        })
        .unwrap();
    assert_eq!(closed, Some(CloseCause::Peer));
    reason.expect("the CLOSE carried a reason")
}
