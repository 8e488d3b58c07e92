//! Two `embassy-net` stacks joined by an in-memory Ethernet link, for testing the embassy drivers
//! on Linux without a TAP device or root: 10.77.0.1 ("host") and 10.77.0.2 ("device"), a
//! parking `block_on` that runs both stacks beside the test's own futures, and a switch that
//! cuts the link.
//!
//! The time is `embassy_time`'s std driver (a real clock); its timer queue is the generic one
//! (`generic-queue-128` in the dev-dependencies), so any executor's wakers may wait on a
//! `Timer`, not only the embassy executor's.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};

/// The host side's address
pub const HOST: Ipv4Address = Ipv4Address::new(10, 77, 0, 1);
/// The device side's address
pub const DEVICE: Ipv4Address = Ipv4Address::new(10, 77, 0, 2);

const MTU: usize = 1514;
/// Frames a direction holds before it drops (a full NIC queue)
const QUEUE: usize = 256;

#[derive(Default)]
struct Direction {
    frames: VecDeque<Vec<u8>>,
    /// The receiving side's waker
    waker: Option<Waker>,
}

#[derive(Default)]
struct Wire {
    /// Index 0: frames towards the host side, 1: towards the device side
    dir: [Direction; 2],
    /// Every frame is dropped while set
    down: bool,
}

/// Switches on the link
#[derive(Clone, Default)]
pub struct Link(Arc<Mutex<Wire>>);

impl Link {
    /// Drop every frame from now on (`false`: carry them again)
    pub fn set_down(&self, down: bool) {
        self.0.lock().unwrap().down = down;
    }
}

/// One end of the link: a `Driver` for `embassy_net::new`
pub struct End {
    wire: Link,
    /// 0: the host side, 1: the device side
    side: usize,
}

pub struct Rx(Vec<u8>);

pub struct Tx {
    wire: Link,
    side: usize,
}

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        let mut w = self.wire.0.lock().unwrap();
        if w.down {
            return r;
        }
        // towards the other side: its index is our side's
        let d = &mut w.dir[1 - self.side];
        if d.frames.len() < QUEUE {
            d.frames.push_back(frame);
        }
        if let Some(waker) = d.waker.take() {
            waker.wake();
        }
        r
    }
}

impl Driver for End {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context) -> Option<(Rx, Tx)> {
        let mut w = self.wire.0.lock().unwrap();
        let d = &mut w.dir[self.side];
        match d.frames.pop_front() {
            Some(frame) => Some((
                Rx(frame),
                Tx {
                    wire: self.wire.clone(),
                    side: self.side,
                },
            )),
            None => {
                d.waker = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Tx> {
        Some(Tx {
            wire: self.wire.clone(),
            side: self.side,
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.max_transmission_unit = MTU;
        c
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([0x02, 0, 0, 0x77, 0, self.side as u8 + 1])
    }
}

/// The resources of one stack (sockets: 4)
pub type Resources = StackResources<4>;

fn config(ip: Ipv4Address) -> Config {
    Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// One stack and its runner
pub type Side<'d> = (Stack<'d>, Runner<'d, End>);

/// The two stacks, their runners (poll them with [`run`]) and the link's switches
pub fn pair<'d>(host: &'d mut Resources, device: &'d mut Resources) -> (Side<'d>, Side<'d>, Link) {
    let link = Link::default();
    let h = embassy_net::new(
        End {
            wire: link.clone(),
            side: 0,
        },
        config(HOST),
        host,
        0x1234_5678,
    );
    let d = embassy_net::new(
        End {
            wire: link.clone(),
            side: 1,
        },
        config(DEVICE),
        device,
        0x8765_4321,
    );
    (h, d, link)
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Poll `fut` on this thread until it completes, parking between wake-ups
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            return r;
        }
        std::thread::park();
    }
}

/// Run both stacks and `fut` until `fut` completes
pub fn run<F: Future>(mut host: Runner<'_, End>, mut device: Runner<'_, End>, fut: F) -> F::Output {
    block_on(async {
        match select(join(host.run(), device.run()), fut).await {
            Either::First(never) => match never {},
            Either::Second(r) => r,
        }
    })
}
