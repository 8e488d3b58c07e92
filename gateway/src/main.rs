//! `longport-gateway`: an offline LongPort OpenAPI gateway the official SDKs run against
//!
//! Run `longport-gateway --help` for the flags; gateway/README.md has a complete example.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use longport_gateway::script::Script;
use longport_gateway::server::{self, GatewayConfig, RateLimit};

const USAGE: &str = "\
usage: longport-gateway [FLAGS]

Listeners (127.0.0.1 by default; port 0 picks a free port, the `listening on` lines tell which):
  --http ADDR              HTTP: token endpoint, account balance   [127.0.0.1:8080]
  --quote ADDR             quote WebSocket (ws://ADDR/v2)           [127.0.0.1:8081]
  --trade ADDR             trade WebSocket (ws://ADDR/v2)           [127.0.0.1:8082]
  --quote-tcp ADDR         quote socket over LongPort TCP framing as well
  --trade-tcp ADDR         trade socket over LongPort TCP framing as well
Script and account:
  --script PATH            market-data script (JSON Lines)          [the built-in trading day]
  --app-key KEY            replaces the app key of the script's first account
  --app-secret SECRET      replaces its app secret
Limits:
  --max-connections N      authenticated connections per account and socket  [10]
  --rate-limit R[:BURST]   business requests per second per connection (integer) [none]
  --session-ttl SECS       lifetime of a socket session                       [3600]
  --ping-interval SECS     WebSocket Ping cadence (the SDK wants one within 120 s) [20]
  --heartbeat-timeout SECS silence after which a connection is closed         [150]
  --auth-timeout SECS      time a new connection has to authenticate          [10]
  --max-unauthenticated N  connections waiting for Auth at once, per socket   [64]
  --max-unauthenticated-per-source N   of those from one IP address (a new one
                           beyond it evicts that address's oldest)             [64]
Other:
  --start-on-auth          start the script's timeline at the first successful Auth
  --quiet                  no connection log lines (the `listening on` lines too)
  -h, --help";

const BUILTIN_SCRIPT: &str = include_str!("../scripts/trading-day.jsonl");

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = v
        .parse()
        .map_err(|e| format!("{flag} {v:?}: {e} (want seconds)"))?;
    if !(s.is_finite() && s > 0.0 && s <= 30.0 * 86_400.0) {
        return Err(format!("{flag} {v:?}: want seconds in (0, 2592000]"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn addr(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("{flag} {v:?}: {e} (want IP:PORT, e.g. 127.0.0.1:8081)"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<GatewayConfig, String> {
    let mut script_path: Option<String> = None;
    let (mut app_key, mut app_secret) = (None, None);
    let mut c = GatewayConfig::loopback(Script::default());
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    c.http = local(8080);
    c.quote_ws = local(8081);
    c.trade_ws = local(8082);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--quiet" => c.verbose = false,
            "--start-on-auth" => c.start_on_auth = true,
            "--http" => c.http = addr(&flag, &value()?)?,
            "--quote" => c.quote_ws = addr(&flag, &value()?)?,
            "--trade" => c.trade_ws = addr(&flag, &value()?)?,
            "--quote-tcp" => c.quote_tcp = Some(addr(&flag, &value()?)?),
            "--trade-tcp" => c.trade_tcp = Some(addr(&flag, &value()?)?),
            "--script" => script_path = Some(value()?),
            "--app-key" => app_key = Some(value()?),
            "--app-secret" => app_secret = Some(value()?),
            "--max-connections" | "--max-unauthenticated" | "--max-unauthenticated-per-source" => {
                let v = value()?;
                let n: u32 = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{flag} {v:?}: want a positive integer"))?;
                match flag.as_str() {
                    "--max-connections" => c.max_connections = n,
                    "--max-unauthenticated" => c.max_unauthenticated = n as usize,
                    _ => c.max_unauthenticated_per_source = n as usize,
                }
            }
            "--rate-limit" => {
                let v = value()?;
                let (r, b) = v.split_once(':').unwrap_or((&v, ""));
                let per_second: u32 = r.parse().ok().filter(|&r| r > 0).ok_or_else(|| {
                    format!("--rate-limit {v:?}: want RATE[:BURST], RATE a positive integer")
                })?;
                let burst = if b.is_empty() {
                    per_second
                } else {
                    b.parse()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| format!("--rate-limit {v:?}: BURST must be positive"))?
                };
                c.rate_limit = Some(RateLimit::per_second(per_second, burst));
            }
            "--session-ttl" => c.session_ttl = secs(&flag, &value()?)?,
            "--ping-interval" => c.ping_interval = secs(&flag, &value()?)?,
            "--heartbeat-timeout" => c.heartbeat_timeout = secs(&flag, &value()?)?,
            "--auth-timeout" => c.auth_timeout = secs(&flag, &value()?)?,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    c.script = match &script_path {
        Some(p) => Script::load(p).map_err(|e| format!("{p}: {e}"))?,
        None => Script::parse(BUILTIN_SCRIPT).map_err(|e| format!("built-in script: {e}"))?,
    };
    server::set_credentials(&mut c.script, app_key.as_deref(), app_secret.as_deref());
    Ok(c)
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
    let mut running = match server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("longport-gateway: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        () = running.finished() => println!("stopped: the script shut the gateway down"),
        _ = tokio::signal::ctrl_c() => {
            running.shutdown("gateway stopped").await;
            println!("stopped: interrupted");
        }
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
    fn parses_flags() {
        let c = parse_args(args(
            "--http 127.0.0.1:0 --quote=127.0.0.1:0 --trade 127.0.0.1:0 --quote-tcp 127.0.0.1:0 \
             --app-key k --app-secret s --max-connections 2 --rate-limit 5:10 --session-ttl 60 \
             --ping-interval 1.5 --start-on-auth --quiet",
        ))
        .unwrap();
        assert_eq!(c.http, "127.0.0.1:0".parse().unwrap());
        assert!(c.quote_tcp.is_some() && c.trade_tcp.is_none());
        assert_eq!(c.script.accounts[0].app_key, "k");
        assert_eq!(c.script.accounts[0].app_secret, "s");
        assert_eq!(c.max_connections, 2);
        assert_eq!(c.rate_limit, Some(RateLimit::per_second(5, 10)));
        assert_eq!(c.session_ttl, Duration::from_secs(60));
        assert_eq!(c.ping_interval, Duration::from_millis(1500));
        assert!(c.start_on_auth && !c.verbose);
    }

    #[test]
    fn defaults_are_loopback_and_the_builtin_script() {
        let c = parse_args(Vec::new()).unwrap();
        assert!(c.http.ip().is_loopback() && c.quote_ws.ip().is_loopback());
        assert_eq!(c.quote_ws.port(), 8081);
        assert_eq!(c.script.accounts[0].app_key, "demo-app-key");
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "--http nope",
            "--max-connections 0",
            "--rate-limit 0",
            "--rate-limit 5:x",
            "--session-ttl -1",
            "--ping-interval",
            "--bogus",
            "--script /nonexistent/script.jsonl",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad}");
        }
    }
}
