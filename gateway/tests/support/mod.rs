//! The `longport-gateway` binary as a test peer: started on 127.0.0.1 with free ports and a
//! script written for the test, its stdout lines collected, killed by PID when dropped

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const KEY: &str = "test-app-key";
pub const SECRET: &str = "test-app-secret";
pub const ACCESS: &str = "test-access-token";
pub const MEMBER_ID: i64 = 4242;
pub const QUOTE_LEVEL: &str = "LV2-offline";

/// The accounts, securities and trading days every test script starts with
pub const HEADER: &str = r#"{"clock": {"start": "2024-01-02T10:00:00+08:00", "speed": 1}}
{"account": {"app_key": "test-app-key", "app_secret": "test-app-secret", "access_token": "test-access-token", "member_id": 4242, "quote_level": "LV2-offline", "balances": [{"currency": "HKD", "total_cash": "1234567.89", "net_assets": "1300000", "buy_power": "2000000", "risk_level": 1, "cash_infos": [{"currency": "HKD", "withdraw_cash": "1000", "available_cash": "1234567.89", "frozen_cash": "0", "settling_cash": "0"}]}]}}
{"security": {"symbol": "700.HK", "name_en": "TENCENT", "currency": "HKD", "lot_size": 100, "quote": {"last_done": "388.2", "prev_close": "385.0", "open": "386.0", "high": "390.0", "low": "384.4", "volume": 1000, "turnover": "388200", "timestamp": "2024-01-02T09:59:00+08:00"}}}
{"security": {"symbol": "9988.HK", "name_en": "BABA-W", "currency": "HKD", "lot_size": 100, "quote": {"last_done": "75.60", "prev_close": "75.00"}}}
{"trade_days": {"market": "HK", "days": ["20240102", "20240103"], "half_days": []}}
"#;

/// A timeline: a quote push for 700.HK at 1 s (389.0), then at 2 s a scripted `Close` of the
/// quote connections (`ServerError`, "scripted restart"); their sessions stay valid
pub const PUSH_THEN_CLOSE: &str = concat!(
    r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "389.0"}}"#,
    "\n",
    r#"{"close": {"at": "2s", "socket": "quote", "code": "ServerError", "reason": "scripted restart"}}"#,
    "\n",
);

/// The SDK's reqwest client honours HTTP(S)_PROXY/ALL_PROXY; a proxy would take our loopback
/// requests away. Fail loudly rather than test a proxy.
pub fn no_proxy_in_the_way() {
    let proxied = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let exempt = ["NO_PROXY", "no_proxy"].iter().any(|v| {
        std::env::var(v).is_ok_and(|s| {
            s.split(',')
                .any(|h| h.trim() == "127.0.0.1" || h.trim() == "*")
        })
    });
    assert!(
        !proxied || exempt,
        "an HTTP proxy is configured: run with NO_PROXY=127.0.0.1,localhost"
    );
}

/// A running `longport-gateway` process
pub struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far
    pub log: Vec<String>,
    pub http: SocketAddr,
    pub quote: SocketAddr,
    pub trade: SocketAddr,
    pub quote_tcp: SocketAddr,
    script: PathBuf,
}

impl Gateway {
    /// Start the binary with `HEADER` + `timeline` as its script and `flags` added; waits
    /// (at most 20 s) for its `listening on` lines
    pub fn start(timeline: &str, flags: &[&str]) -> Gateway {
        no_proxy_in_the_way();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let script = std::env::temp_dir().join(format!(
            "longport-gateway-test-{}-{n}.jsonl",
            std::process::id()
        ));
        std::fs::write(&script, format!("{HEADER}{timeline}")).expect("write the test script");
        let mut child = Command::new(env!("CARGO_BIN_EXE_longport-gateway"))
            .args([
                "--http",
                "127.0.0.1:0",
                "--quote",
                "127.0.0.1:0",
                "--trade",
                "127.0.0.1:0",
                "--quote-tcp",
                "127.0.0.1:0",
                "--script",
            ])
            .arg(&script)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start longport-gateway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut g = Gateway {
            child,
            lines: rx,
            log: Vec::new(),
            http: "0.0.0.0:0".parse().unwrap(),
            quote: "0.0.0.0:0".parse().unwrap(),
            trade: "0.0.0.0:0".parse().unwrap(),
            quote_tcp: "0.0.0.0:0".parse().unwrap(),
            script,
        };
        let addr_of = |g: &mut Gateway, what: &str| -> SocketAddr {
            let line = g.wait_for(&format!("({what})"), Duration::from_secs(20));
            let url = line
                .split_whitespace()
                .nth(2)
                .expect("listening on URL (what)");
            let hostport = url.split("://").nth(1).unwrap();
            let a: SocketAddr = hostport.parse().unwrap();
            assert!(a.ip().is_loopback(), "{line}");
            a
        };
        g.http = addr_of(&mut g, "HTTP");
        g.quote = addr_of(&mut g, "quote");
        g.trade = addr_of(&mut g, "trade");
        let tcp = g.wait_for("listening on tcp://", Duration::from_secs(5));
        g.quote_tcp = tcp
            .split("tcp://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        g
    }

    /// The first line (already seen or coming within `limit`) that contains `needle`;
    /// panics with the log when none comes
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.next_matching(needle, limit)
    }

    /// The next new line containing `needle` within `limit`
    pub fn next_matching(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no gateway line containing {needle:?} within {limit:?}; log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Lines arrived so far, without waiting
    pub fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        &self.log
    }

    /// Lines containing `needle`, after draining
    pub fn count(&mut self, needle: &str) -> usize {
        self.drain().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
    pub fn quote_url(&self) -> String {
        format!("ws://{}/v2", self.quote)
    }
    pub fn trade_url(&self) -> String {
        format!("ws://{}/v2", self.trade)
    }

    /// The process id
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (within `limit`)
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.script);
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc/PID/status)
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}
