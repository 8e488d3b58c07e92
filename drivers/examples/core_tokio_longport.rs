//! LongPort client over tokio TCP with reconnect, with the core only (no driver): the run loop
//! written by hand with `tether_net::poll_output`, for comparison with `tokio_longport.rs` (the
//! same scenario on the driver)
//!
//! usage: cargo run --example core_tokio_longport -- ADDR TOKEN [TOKEN...]
//!
//! Logs in with the first one-time token (the others answer `TokenNeeded`, standing in for the
//! HTTP socket-token API), sends one business request on every new connection and prints its
//! response; when the transport drops it reconnects with the session and sends the request
//! again; closes after the second response.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_net::longport::{Client, ClientApp, ClientConfig, ClientEvent, Credentials};
use tether_net::time::Epoch;
use tether_net::{poll_output, Output};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant as TokioInstant};

const USAGE: &str = "usage: core_tokio_longport ADDR TOKEN [TOKEN...]"; // scenario
const CMD: u8 = 4; // scenario
const BODY: &[u8] = b"hello from tokio"; // scenario
const RESPONSES: usize = 2; // scenario
const CLOSE_REASON: &str = "done"; // scenario

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn StdError>> {
    let mut args = std::env::args().skip(1); // scenario
    let addr: SocketAddr = args.next().ok_or(USAGE)?.parse()?; // scenario
    let first_token = args.next().ok_or(USAGE)?; // scenario
    let mut tokens = args; // scenario

    let epoch = Epoch::new(std::time::Instant::now());
    let now = || epoch.instant(std::time::Instant::now());
    let mut client = Client::new(ClientConfig::tcp());
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    client.set_wall_clock(now(), i64::try_from(unix_ms)?);
    client.connect(now(), Credentials::new(&first_token))?;

    let mut stream: Option<TcpStream> = None;
    let mut rx: Vec<u8> = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 4096];
    let mut responses = 0;
    loop {
        // 2. hand out every frame and every event; commands are issued right where they arise
        loop {
            let out = match poll_output(&mut client, now(), &mut buf) {
                Ok(Some(out)) => out,
                Ok(None) => break,
                Err(e) => {
                    buf.resize(e.required, 0); // the frame stays queued
                    continue;
                }
            };
            match out {
                Output::Transmit(t) => write(&mut stream, &buf[..t.len], &mut client, now()).await,
                Output::Event(event) => {
                    println!("event: {event:?}"); // scenario
                    match event {
                        ClientEvent::ConnectTransport { .. } => {
                            let dial = timeout(
                                client.config().connect_timeout(),
                                TcpStream::connect(addr),
                            );
                            match dial.await {
                                Ok(Ok(s)) => {
                                    stream = Some(s);
                                    client.handle_connected(now())?;
                                }
                                _ => client.handle_closed(now(), ()), // the client retries later
                            }
                        }
                        ClientEvent::TokenNeeded => match tokens.next() {
                            Some(token) => client.provide_token(now(), &token)?,
                            None => client.close(now(), CLOSE_REASON)?,
                        },
                        ClientEvent::Connected { .. } => {
                            let (id, t) =
                                client.send_request(now(), CMD, Duration::ZERO, BODY, &mut buf)?;
                            println!("request {id} sent"); // scenario
                            write(&mut stream, &buf[..t.len], &mut client, now()).await;
                        }
                        ClientEvent::Disconnected { .. } => {
                            stream = None; // this transport is finished
                            rx.clear();
                        }
                        ClientEvent::Closed { .. } => return Ok(()), // dropping the socket closes it
                        _ => {}
                    }
                }
            }
        }
        // 1. one input: a packet already in `rx`
        if !rx.is_empty() {
            let r = client.handle_input(now(), (), &rx)?;
            match r.app() {
                Some(ClientApp::Response {
                    request_id, body, ..
                }) => {
                    let text = String::from_utf8_lossy(body); // scenario
                    println!("response to {request_id}: {text:?}"); // scenario
                    responses += 1;
                }
                Some(app) => println!("{app:?}"), // scenario: a login error, a close reason
                None => {}
            }
            let consumed = r.bytes_consumed();
            rx.drain(..consumed);
            if responses == RESPONSES {
                client.close(now(), CLOSE_REASON)?;
            }
            if consumed > 0 {
                continue; // drain, then the next packet
            }
        }
        // 3. sleep until bytes arrive or the machine's next deadline; 1. one input
        let deadline = client.poll_timeout().map(|t| epoch.to_std(t).into());
        tokio::select! {
            r = read(&mut stream, &mut rx) => if !matches!(r, Ok(n) if n > 0) {
                client.handle_closed(now(), ()); // end of stream or error: transport gone
            },
            () = sleep_until(deadline) => client.handle_timeout(now()),
        }
    }
}

/// Write one frame; a broken transport is reported to the client, which reconnects
async fn write(
    stream: &mut Option<TcpStream>,
    bytes: &[u8],
    client: &mut Client,
    now: tether_net::Instant,
) {
    if let Some(s) = stream {
        if s.write_all(bytes).await.is_err() {
            client.handle_closed(now, ());
        }
    }
}

/// Read more bytes of the transport into `rx`; pending forever without a transport
async fn read(stream: &mut Option<TcpStream>, rx: &mut Vec<u8>) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read_buf(rx).await,
        None => std::future::pending().await,
    }
}

/// Sleep until `deadline`, or forever without one
async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
