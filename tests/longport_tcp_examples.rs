//! The LongPort TCP example loops (tests/support/longport_tcp.rs) over real loopback sockets:
//! auth, an echoed business request and a heartbeat RTT; a wrong token is refused

#[path = "support/longport_tcp.rs"]
mod longport_tcp;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn client_and_server_loops_over_loopback_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let server = {
        let (stop, log) = (stop.clone(), server_log.clone());
        std::thread::spawn(move || {
            longport_tcp::serve(listener, "secret", &stop, |l| log.lock().unwrap().push(l))
        })
    };
    let mut client_log = Vec::new();
    let report = longport_tcp::run_client(
        addr,
        "secret",
        b"ping over tcp",
        Duration::from_millis(50),
        Duration::from_secs(20),
        |l| client_log.push(l),
    )
    .unwrap_or_else(|e| panic!("{e}: {client_log:#?}"));
    // 128 random bits in hex, a fresh one per login
    assert_eq!(report.session_id.len(), 32);
    assert!(report.session_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(report.echo, b"ping over tcp");
    assert!(
        report.rtt < Duration::from_secs(1),
        "loopback rtt {:?}",
        report.rtt
    );
    assert!(client_log.iter().any(|l| l.starts_with("event: Connected")));
    assert!(client_log
        .iter()
        .any(|l| l.starts_with("event: HeartbeatRtt")));
    assert!(client_log.last().unwrap().starts_with("event: Closed"));

    let mut refused_log = Vec::new();
    let err = longport_tcp::run_client(
        addr,
        "wrong",
        b"x",
        Duration::from_millis(50),
        Duration::from_secs(20),
        |l| refused_log.push(l),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("invalid token"));

    stop.store(true, Ordering::Relaxed);
    let r = server.join().unwrap().unwrap();
    assert_eq!(
        (r.connections, r.authenticated, r.rejected, r.echoed),
        (2, 1, 1, 1)
    );
    let log = server_log.lock().unwrap();
    assert!(log.iter().any(|l| l.contains("Connected")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("LoginRejected")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("ShutdownComplete")),
        "{log:#?}"
    );
}
