//! Start and stop a real DDNet server (Debian's `ddnet-server`) for interop tests, on loopback or
//! on an address of the test's private network namespace (shared by the root crate's tests and
//! the drivers' tests, which include this file by path)
//!
//! Recipe: a throw-away HOME whose `autoexec_server.cfg` shadows the packaged one, bound to
//! 127.0.0.1 (or the given address) with `sv_ipv4only 1`, no master-server registration, a
//! console fifo for test commands, started with no command-line arguments (every argument would
//! run as a console command). Stopped by PID with SIGINT, then SIGKILL if it lingers.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Raw DDNet CONNECT (token form), used only to probe readiness
const PROBE_CONNECT: [u8; 12] = [
    0x10, 0, 0, 0x01, b'T', b'K', b'E', b'N', 0xff, 0xff, 0xff, 0xff,
];

pub struct DdnetServer {
    child: Option<Child>,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    pub work: PathBuf,
    fifo: PathBuf,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("DDNET_SERVER") {
        return PathBuf::from(p);
    }
    let out = Command::new("dpkg").args(["-L", "ddnet-server"]).output();
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.ends_with("/DDNet-Server") {
                return PathBuf::from(line);
            }
        }
    }
    PathBuf::from("/usr/games/DDNet-Server")
}

fn free_udp_port(ip: std::net::Ipv4Addr) -> u16 {
    let s = UdpSocket::bind((ip, 0)).expect("bind a probe socket");
    s.local_addr().unwrap().port()
}

impl DdnetServer {
    /// Start a server; `extra_cfg` lines are appended to the config. Panics loudly (with the
    /// server log) when it cannot start or does not answer within 20 s.
    pub fn start(name: &str, extra_cfg: &str) -> DdnetServer {
        Self::start_on(name, extra_cfg, std::net::Ipv4Addr::LOCALHOST)
    }

    /// Start a server bound to `ip` (an address of this host or of the test's private
    /// network namespace)
    pub fn start_on(name: &str, extra_cfg: &str, ip: std::net::Ipv4Addr) -> DdnetServer {
        let bin = binary();
        assert!(
            bin.exists(),
            "DDNet-Server not found at {} — install Debian's ddnet-server (apt-get install ddnet-server)",
            bin.display()
        );
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let work = std::env::temp_dir().join(format!(
            "tether-ddnet-{name}-{}-{stamp}",
            std::process::id()
        ));
        let home = work.join("home");
        let cfg_dir = home.join(".local/share/ddnet");
        fs::create_dir_all(&cfg_dir).unwrap();
        let fifo = work.join("console.fifo");
        let port = free_udp_port(ip);
        let cfg = format!(
            "sv_register 0\nsv_ipv4only 1\nbindaddr {ip}\nsv_port {port}\nsv_name \"tether-ci\"\n\
             ec_port 0\nsv_use_sql 0\nsv_sqlite_file \"{w}/ddnet-server.sqlite\"\n\
             sv_input_fifo \"{f}\"\nlogfile \"\"\nsv_vanilla_antispoof 0\nsv_map \"Tutorial\"\n\
             sv_max_clients_per_ip 64\nsv_connlimit_time 0\n{extra_cfg}\n",
            w = work.display(),
            f = fifo.display(),
        );
        fs::write(cfg_dir.join("autoexec_server.cfg"), cfg).unwrap();
        let log = fs::File::create(work.join("server.log")).unwrap();
        let child = Command::new(&bin)
            .current_dir(&work)
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let mut server = DdnetServer {
            child: Some(child),
            ip,
            port,
            work,
            fifo,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind((self.ip, 0)).unwrap();
        sock.connect((self.ip, self.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "DDNet-Server exited with {status} before answering; log:\n{}",
                    self.log_tail()
                );
            }
            let _ = sock.send(&PROBE_CONNECT);
            if let Ok(n) = sock.recv(&mut buf) {
                if n >= 4 && buf[3] == 0x02 {
                    eprintln!(
                        "ddnet-server ready on {}:{} after {:?}",
                        self.ip,
                        self.port,
                        start.elapsed()
                    );
                    return;
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "DDNet-Server did not answer within 20 s; log:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from((self.ip, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Write one console command into the server's input fifo
    pub fn console(&self, cmd: &str) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .unwrap_or_else(|e| panic!("open console fifo {}: {e}", self.fifo.display()));
        writeln!(f, "{cmd}").unwrap();
    }

    /// Send SIGINT (the server then closes every client with "Server shutdown")
    pub fn interrupt(&self) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -INT {pid} failed");
    }

    /// Wait for the process to end (bounded), returning its exit code
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.work.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.work.join("server.log")).unwrap_or_default()
    }

    pub fn work_dir(&self) -> &Path {
        &self.work
    }
}

impl Drop for DdnetServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}
