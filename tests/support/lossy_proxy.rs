//! A loopback UDP proxy that drops a seeded share of the datagrams each way (one client)
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct LossyProxy {
    /// Where the client sends
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// (forwarded, dropped) client→server, then server→client
    counts: Arc<[AtomicU64; 4]>,
}

/// xorshift64*: true with probability `p`
fn chance(state: &mut u64, p: f64) -> bool {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
    ((x >> 11) as f64 / (1u64 << 53) as f64) < p
}

impl LossyProxy {
    /// Forward between one client (the first sender) and `server`, dropping each datagram with
    /// probability `loss`
    pub fn start(server: SocketAddr, loss: f64, seed: u64) -> LossyProxy {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        back.connect(server).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let mut threads = Vec::new();
        {
            let (stop, counts, client) = (stop.clone(), counts.clone(), client.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        if chance(&mut rng, loss) {
                            counts[1].fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts[0].fetch_add(1, Ordering::Relaxed);
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            }));
        }
        {
            let (stop, counts, client) = (stop.clone(), counts.clone(), client.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = (seed ^ 0xA5A5_5A5A).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back2.recv(&mut buf) {
                        let to = *client.lock().unwrap();
                        if chance(&mut rng, loss) {
                            counts[3].fetch_add(1, Ordering::Relaxed);
                        } else if let Some(to) = to {
                            counts[2].fetch_add(1, Ordering::Relaxed);
                            let _ = front2.send_to(&buf[..n], to);
                        }
                    }
                }
            }));
        }
        LossyProxy {
            addr,
            stop,
            threads,
            counts,
        }
    }

    /// (forwarded, dropped) client→server, then server→client
    pub fn counts(&self) -> [u64; 4] {
        core::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
