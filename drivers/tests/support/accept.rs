//! The token a game server's CONNECT_ACCEPT hands out, as the datagram tests read it

use tether_net::game::wire::{self, Control, ControlPacket, Packet, Token, TokenMode};

/// The token of a CONNECT_ACCEPT
pub fn token_of(reply: &[u8]) -> Token {
    match wire::parse(reply, TokenMode::Detect)
        .expect("valid reply")
        .packet
    {
        Packet::Control(ControlPacket {
            control: Control::ConnectAccept,
            token: Some(t),
            ..
        }) => t,
        other => panic!("not a token CONNECT_ACCEPT: {other:?}"),
    }
}
