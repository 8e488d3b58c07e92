//! Start our example server (`examples/ddnet_server.rs`) and Debian's DDNet 16.4 client headless
//! (Xvfb, software OpenGL, no sound, a throw-away HOME) on loopback, and watch their logs
//!
//! Nothing is installed here: a missing `DDNet` or `Xvfb` fails loudly with the apt line. Every
//! process is stopped by its PID when its handle is dropped.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APT: &str = "apt-get install -y --no-install-recommends ddnet xvfb xauth libgl1-mesa-dri";

/// A fresh directory under the temp dir
pub fn work_dir(name: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("tether-{name}-{}-{stamp}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket on 127.0.0.1");
    s.local_addr().unwrap().port()
}

fn stop_child(child: &mut Child, signal: &str, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The example binary, built by cargo when it is missing
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/ddnet_server
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("examples").join("ddnet_server");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--offline", "--example", "ddnet_server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example ddnet_server");
        assert!(
            status.success(),
            "cargo build --example ddnet_server failed"
        );
    }
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// Our example server, its stdout collected line by line with the time each line arrived
pub struct OurServer {
    child: Child,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl OurServer {
    /// Start `ddnet_server --listen 127.0.0.1:<free port> <args>` (and the words of
    /// `TETHER_DDNET_SERVER_ARGS`, for measurements by hand); panics unless it prints
    /// `listening on` within 10 s
    pub fn start(args: &[&str]) -> OurServer {
        let port = free_udp_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(example_binary())
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            // extra flags for measurements by hand (e.g. --reference-timers)
            .args(
                std::env::var("TETHER_DDNET_SERVER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn examples/ddnet_server");
        let out = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        {
            let lines = lines.clone();
            let start = Instant::now();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    eprintln!(
                        "[ddnet_server {:7.3}s] {line}",
                        start.elapsed().as_secs_f64()
                    );
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            });
        }
        let s = OurServer { child, addr, lines };
        assert!(
            s.wait_line("listening on", Duration::from_secs(10))
                .is_some(),
            "ddnet_server did not start"
        );
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line containing `pat`, waiting up to `limit`
    pub fn wait_line(&self, pat: &str, limit: Duration) -> Option<(Instant, String)> {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| l.contains(pat))
            {
                return Some(l.clone());
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGINT (the server then sends its shutdown CLOSE to every peer)
    pub fn interrupt(&self) {
        let ok = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait (bounded) for the exit, returning its code
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-INT", Duration::from_secs(3));
    }
}

/// Xvfb on a display it picks itself (`-displayfd`)
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        let bin = which("Xvfb").unwrap_or_else(|| panic!("Xvfb not found: {APT}"));
        let mut child = Command::new(bin)
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "640x480x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn Xvfb");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap_or(0);
        assert!(n > 0, "Xvfb printed no display number");
        let display = format!(":{}", line.trim());
        Xvfb { child, display }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-TERM", Duration::from_secs(2));
    }
}

fn which(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/games", "/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// The real DDNet client, connected with `DDNet "connect 127.0.0.1:PORT"`, its log in a file
pub struct RealClient {
    child: Child,
    pub home: PathBuf,
    log: PathBuf,
    work: PathBuf,
    _x: Xvfb,
}

impl RealClient {
    /// Start the client in a fresh HOME (sound off, small window, name `realclient`) under a new
    /// Xvfb, connecting to `to`
    pub fn start(name: &str, to: SocketAddr) -> RealClient {
        let bin = std::env::var_os("DDNET_CLIENT")
            .map(PathBuf::from)
            .or_else(|| which("DDNet"))
            .unwrap_or_else(|| panic!("the DDNet client is not installed: {APT}"));
        let x = Xvfb::start();
        let work = work_dir(name);
        let home = work.join("home");
        let cfg = home.join(".local/share/ddnet");
        fs::create_dir_all(&cfg).unwrap();
        fs::write(
            cfg.join("settings_ddnet.cfg"),
            "snd_enable 0\ngfx_fullscreen 0\ngfx_screen_width 320\ngfx_screen_height 240\n\
             gfx_refresh_rate 30\nplayer_name \"realclient\"\n",
        )
        .unwrap();
        let log = work.join("client.log");
        let f = fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("connect {to}"))
            .current_dir(&work)
            .env("HOME", &home)
            .env("DISPLAY", &x.display)
            .env("SDL_AUDIODRIVER", "dummy")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn DDNet");
        RealClient {
            child,
            home,
            log,
            work,
            _x: x,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of the client's log that matter here (client, chat, datafile downloads)
    pub fn log_summary(&self) -> String {
        self.log()
            .lines()
            .filter(|l| {
                (l.contains(" client:") || l.contains(" chat:") || l.contains("downloadedmaps"))
                    && !l.contains("http")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait up to `limit` for a log line containing `pat` after the first line containing
    /// `after` (or anywhere when `after` is empty); the line and when it was seen
    pub fn wait_line(&self, after: &str, pat: &str, limit: Duration) -> Option<(Instant, String)> {
        let start = Instant::now();
        loop {
            let log = self.log();
            let from = if after.is_empty() {
                Some(0)
            } else {
                log.find(after)
            };
            if let Some(line) = from.and_then(|i| log[i..].lines().find(|l| l.contains(pat))) {
                return Some((Instant::now(), line.to_string()));
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The downloaded maps in the client's HOME
    pub fn downloaded_maps(&self) -> Vec<PathBuf> {
        let dir = self.home.join(".local/share/ddnet/downloadedmaps");
        fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

impl Drop for RealClient {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-TERM", Duration::from_secs(3));
        let _ = fs::remove_dir_all(&self.work);
    }
}
