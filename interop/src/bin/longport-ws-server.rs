//! `longport-ws-server`: tether's LongPort server machine on a WebSocket listener
//!
//! ```text
//! longport-ws-server --listen 127.0.0.1:PORT --token TOKEN [--ping-interval-ms N]
//!     [--heartbeat-timeout-ms N] [--auth-timeout-ms N] [--session-ttl-ms N] [--quiet]
//! ```
//!
//! Prints `listening on ADDR` on stdout once the listener is bound (port 0 picks a free port;
//! ADDR is the real one), then serves until Ctrl-C (SIGINT), which closes every connection with
//! `Close{ServerShutdown}` first.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tether_interop::{start, Config};

const USAGE: &str = "usage: longport-ws-server --listen ADDR:PORT --token TOKEN \
[--ping-interval-ms N] [--heartbeat-timeout-ms N] [--auth-timeout-ms N] [--session-ttl-ms N] [--quiet]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut listen: Option<SocketAddr> = None;
    let mut token: Option<String> = None;
    let mut millis: [(&str, Option<u64>); 4] = [
        ("--ping-interval-ms", None),
        ("--heartbeat-timeout-ms", None),
        ("--auth-timeout-ms", None),
        ("--session-ttl-ms", None),
    ];
    let mut verbose = true;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--quiet" => verbose = false,
            "--listen" => {
                let v = value("--listen")?;
                listen = Some(
                    v.parse()
                        .map_err(|e| format!("--listen {v:?}: {e} (want IP:PORT)"))?,
                );
            }
            "--token" => token = Some(value("--token")?),
            other => {
                let Some(slot) = millis.iter_mut().find(|(n, _)| *n == other) else {
                    return Err(format!("unknown argument {other:?}\n{USAGE}"));
                };
                let v = value(other)?;
                slot.1 = Some(
                    v.parse()
                        .map_err(|e| format!("{other} {v:?}: {e} (want milliseconds)"))?,
                );
            }
        }
    }
    let listen = listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?;
    let token = token.ok_or_else(|| format!("--token is required\n{USAGE}"))?;
    let mut config = Config::new(listen, token);
    let [ping, heartbeat, auth, ttl] = millis.map(|(_, v)| v.map(Duration::from_millis));
    if let Some(d) = ping {
        config.ping_interval = d;
    }
    if let Some(d) = heartbeat {
        config.heartbeat_timeout = d;
    }
    if let Some(d) = auth {
        config.auth_timeout = d;
    }
    if let Some(d) = ttl {
        config.session_ttl = d;
    }
    config.verbose = verbose;
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", running.local_addr());
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    let n = running
        .close_all(
            tether_net::longport::control::CloseCode::ServerShutdown,
            "server shutdown",
        )
        .await;
    if n > 0 {
        // Give the Close pushes and frames a moment to go out.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_all_flags() {
        let c = parse_args(args(
            "--listen 127.0.0.1:0 --token=abc --ping-interval-ms 1500 --auth-timeout-ms=700 --quiet",
        ))
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.token, "abc");
        assert_eq!(c.ping_interval, Duration::from_millis(1500));
        assert_eq!(c.auth_timeout, Duration::from_millis(700));
        assert!(!c.verbose);
    }

    #[test]
    fn rejects_missing_and_bad_values() {
        assert!(parse_args(args("--token abc"))
            .unwrap_err()
            .contains("--listen"));
        assert!(parse_args(args("--listen 127.0.0.1:1"))
            .unwrap_err()
            .contains("--token"));
        assert!(parse_args(args("--listen nope --token a")).is_err());
        assert!(parse_args(args("--listen 127.0.0.1:1 --token a --ping-interval-ms x")).is_err());
        assert!(parse_args(args("--listen 127.0.0.1:1 --token"))
            .unwrap_err()
            .contains("value"));
        assert!(parse_args(args("--listen 127.0.0.1:1 --token a --bogus")).is_err());
    }
}
