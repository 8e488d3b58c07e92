//! Teeworlds 0.6 / DDNet UDP control plane: KEEP_ALIVE, CONNECT, CONNECT_ACCEPT, ACCEPT, CLOSE
//!
//! * [`wire`]: byte layout (header, control messages, chunk pass-through), no state.
//! * [`token`]: stateless DDNet security tokens (SipHash-2-4 keyed by a server secret).
//! * [`client::Client`]: connects (DDNet token form by default, vanilla on request), keeps the
//!   connection alive, detects timeouts, closes with a reason.
//! * [`server::Server`]: admits DDNet clients statelessly (no state before a valid ACCEPT, no
//!   reply larger than its request), handles vanilla clients by [`server::VanillaPolicy`], keeps
//!   up to `N` peers alive, kicks and shuts down.
//! * [`event`]: the events, close causes, errors of both machines.
//!
//! Both machines implement [`crate::Machine`] and pass application (chunk) packets through
//! borrowed in [`crate::Received::app`] as [`wire::ChunkPacket`]; they do not implement
//! vital-chunk sequencing, so the application reports its ack (`set_ack`) and sequence
//! (`set_sequence`) and the machines put the ack on every packet and range-check incoming acks.
//!
//! Timer defaults differ from the reference peers where the project's seed says so: the client's
//! keep-alive default is the seed's 250 ms while DDNet and vanilla 0.6 send one after 1 s of
//! silence (the server's default); timeouts default to vanilla's 10 s (DDNet: 100 s).
//!
//! ```
//! use tether_net::game::{Client, ClientConfig, Server, ServerConfig, TokenSecret};
//! use tether_net::{Instant, Machine};
//!
//! let mut client: Client = Client::new(ClientConfig::default());
//! let mut server: Server<u32, 16> = Server::new(ServerConfig::new(TokenSecret([42; 16])));
//! let now = Instant::from_millis(0);
//! client.connect(now).unwrap();
//! let (mut to_server, mut to_client) = ([0u8; 1400], [0u8; 1400]);
//! // CONNECT -> CONNECT_ACCEPT -> ACCEPT over a perfect link; peer address 7
//! for _ in 0..2 {
//!     while let Some(t) = client.poll_transmit(now, &mut to_server).unwrap() {
//!         let _ = server.handle_input(now, 7, &to_server[..t.len]).unwrap();
//!     }
//!     while let Some(t) = server.poll_transmit(now, &mut to_client).unwrap() {
//!         let _ = client.handle_input(now, (), &to_client[..t.len]).unwrap();
//!     }
//! }
//! assert!(server.is_online(7));
//! assert!(client.token().is_some());
//! ```

pub mod chunk;
pub mod client;
pub mod connless;
pub mod event;
pub mod huffman;
pub mod msg;
pub mod packer;
pub mod server;
mod table;
pub mod token;
pub mod vital;
pub mod wire;

pub use client::{Client, ClientConfig, ClientState, ClientStats};
pub use event::{
    ClientCloseCause, ClientEvent, CloseError, CommandError, ConnectError, InputError,
    PeerCloseCause, ReasonText, SendError, ServerEvent,
};
pub use server::{Server, ServerConfig, ServerState, ServerStats, VanillaPolicy};
pub use token::TokenSecret;
pub use wire::{ChunkPacket, Flags, Header, Token};

/// Write one chunk packet of a connection (its `ack` and `token`) into `out`, for the
/// `send_chunks` of both machines: the control flag cleared, the token left out when
/// `flags.compression` is set (the caller puts it inside the compressed data), the length
/// checked against [`wire::MAX_PACKET_LEN`] before anything is written. Returns the length.
fn write_chunks(
    flags: Flags,
    ack: u16,
    num_chunks: u8,
    payload: &[u8],
    token: Option<Token>,
    out: &mut [u8],
) -> Result<usize, SendError> {
    let flags = Flags {
        control: false,
        ..flags
    };
    let packet = ChunkPacket {
        header: Header {
            flags,
            ack,
            num_chunks,
        },
        payload,
        token: if flags.compression { None } else { token },
    };
    let len = packet.buffer_len();
    if len > wire::MAX_PACKET_LEN {
        return Err(SendError::TooLong { len });
    }
    packet.emit(out).map_err(|e| SendError::BufferTooSmall {
        required: e.required,
    })
}
