//! Prints `size_of` of the machine types (default capacities) and per-slot costs over semihosting
//!
//! Run on QEMU (thumbv7m, lm3s6965evb); thumbv7em has the same data layout (32-bit pointers,
//! 8-byte aligned u64), so the numbers hold for both.
#![no_std]
#![no_main]

use core::mem::size_of;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use tether_net::{game, longport};

type Addr = ([u8; 4], u16);

macro_rules! show {
    ($name:expr, $bytes:expr) => {
        hprintln!("size_of {} = {}", $name, $bytes)
    };
}

#[entry]
fn main() -> ! {
    hprintln!("sizes on {}", env!("FW_TARGET"));
    show!("game::Client", size_of::<game::Client>());
    show!("game::ClientEvent", size_of::<game::ClientEvent>());
    show!("game::Client<1>", size_of::<game::Client<1>>());
    // parts of the client: what its size is made of
    show!("game::ClientConfig", size_of::<game::ClientConfig>());
    show!("game::ClientStats", size_of::<game::ClientStats>());
    show!("game::CloseCause", size_of::<game::CloseCause>());
    show!(
        "game::Server<u32> (64 peers)",
        size_of::<game::Server<u32>>()
    );
    show!("game::Server<u32,16>", size_of::<game::Server<u32, 16>>());
    show!(
        "game::Server<(ipv4,port),16>",
        size_of::<game::Server<Addr, 16>>()
    );
    show!(
        "game::ServerEvent<(ipv4,port)>",
        size_of::<game::ServerEvent<Addr>>()
    );
    // marginal cost of one peer slot: table entry + index + dirty queue + timer heap entry
    let per_peer_u32 =
        (size_of::<game::Server<u32, 64>>() - size_of::<game::Server<u32, 32>>()) / 32;
    let per_peer_addr =
        (size_of::<game::Server<Addr, 64>>() - size_of::<game::Server<Addr, 32>>()) / 32;
    show!("game::Server per peer slot (u32 key)", per_peer_u32);
    show!(
        "game::Server per peer slot ((ipv4,port) key)",
        per_peer_addr
    );
    show!("longport::Client", size_of::<longport::Client>());
    show!("longport::ClientEvent", size_of::<longport::ClientEvent>());
    show!("longport::Server<u32>", size_of::<longport::Server<u32>>());
    show!(
        "longport::ServerEvent<u32>",
        size_of::<longport::ServerEvent<u32>>()
    );
    let per_conn = (size_of::<longport::Server<u32, 32, 64>>()
        - size_of::<longport::Server<u32, 16, 64>>())
        / 16;
    let per_session = (size_of::<longport::Server<u32, 16, 128>>()
        - size_of::<longport::Server<u32, 16, 64>>())
        / 64;
    show!("longport::Server per connection slot (u32 id)", per_conn);
    show!("longport::Server per session entry", per_session);
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}
