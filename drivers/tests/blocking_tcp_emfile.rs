//! The blocking LongPort server out of file descriptors (an accept flood's end state): alone in
//! its test binary, because it lowers the process's descriptor limit
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tether_net::longport::ServerConfig;
use tether_net_drivers::blocking::{ServerItem, ServerLimits, TcpServer};

/// The highest descriptor number open in this process
fn highest_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
}

/// Three connections wait in the backlog while every descriptor is taken: `accept` fails with
/// EMFILE, which `run` treats as transient (no error, the loop goes on); once descriptors are
/// free again the three are accepted
#[test]
fn out_of_descriptors_the_server_goes_on_and_accepts_once_some_are_free() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut srv: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), ServerLimits::default()).unwrap();
    let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, highest_fd() + 1, hard).unwrap();
    // take the free numbers below the limit
    let mut fillers = Vec::new();
    let full = loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => break e,
        }
    };
    let starved = srv.run(Duration::from_millis(200), |_, item| match item {
        ServerItem::Accepted { .. } => Some(()),
        _ => None,
    });
    let starved_connections = srv.connections();
    drop(fillers);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert_eq!(full.raw_os_error(), Some(24), "{full}");
    assert_eq!(starved.unwrap(), None, "EMFILE is not an error of run");
    assert_eq!(starved_connections, 0);

    let mut accepted = 0;
    let started = std::time::Instant::now();
    while accepted < 3 && started.elapsed() < Duration::from_secs(5) {
        srv.run(Duration::from_millis(10), |_, item| {
            if let ServerItem::Accepted { .. } = item {
                accepted += 1;
            }
            None::<()>
        })
        .unwrap();
    }
    assert_eq!(accepted, 3);
    assert_eq!(srv.connections(), 3);
    drop(clients);
}
