//! What the LongPort client drivers need from a LongPort client beyond [`Machine`]: the commands
//! a driver issues itself (open transport reported, token, request, close)
//!
//! Implemented for [`longport::Client`] of every capacity, so each driver is written once and
//! serves any `Client<REQUESTS, EVENTS, ..>`.

use tether_net::longport::{
    self, ClientApp, ClientEvent, Credentials, Error, RequestId, Transport,
};
use tether_net::{Duration, Instant, Machine, Transmit};

/// A LongPort client machine, as the drivers drive it
pub trait LongPortClient:
    for<'a> Machine<Peer = (), Event = ClientEvent, App<'a> = ClientApp<'a>, Error = Error>
{
    /// The transport the machine was configured for
    fn transport(&self) -> Transport;
    /// Start with these credentials (`Client::connect`)
    ///
    /// # Errors
    /// As `Client::connect`.
    fn connect(&mut self, now: Instant, credentials: Credentials<'_>) -> Result<(), Error>;
    /// The transport asked for by `ConnectTransport` is open (`Client::handle_connected`)
    ///
    /// # Errors
    /// As `Client::handle_connected`.
    fn handle_connected(&mut self, now: Instant) -> Result<(), Error>;
    /// A fresh one-time token (`Client::provide_token`)
    ///
    /// # Errors
    /// As `Client::provide_token`.
    fn provide_token(&mut self, now: Instant, token: &str) -> Result<(), Error>;
    /// Write a business request into `out` (`Client::send_request`)
    ///
    /// # Errors
    /// As `Client::send_request`.
    fn send_request(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), Error>;
    /// End everything (`Client::close`)
    ///
    /// # Errors
    /// As `Client::close`.
    fn close(&mut self, now: Instant, reason: &str) -> Result<(), Error>;
    /// The dial timeout of the configuration
    fn connect_timeout(&self) -> Duration;
    /// The largest body the configuration accepts
    fn max_body(&self) -> usize;
    /// Tell the machine the Unix time (`Client::set_wall_clock`)
    fn set_wall_clock(&mut self, now: Instant, unix_ms: i64);
    /// The session id, once granted
    fn session_id(&self) -> Option<&str>;
    /// Requests tracked (`Client::in_flight`)
    fn in_flight(&self) -> usize;
}

impl<
        const REQUESTS: usize,
        const EVENTS: usize,
        const TOKEN_LEN: usize,
        const SESSION_LEN: usize,
        const METADATA_LEN: usize,
    > LongPortClient for longport::Client<REQUESTS, EVENTS, TOKEN_LEN, SESSION_LEN, METADATA_LEN>
{
    fn transport(&self) -> Transport {
        self.config().transport()
    }
    fn connect(&mut self, now: Instant, credentials: Credentials<'_>) -> Result<(), Error> {
        longport::Client::connect(self, now, credentials)
    }
    fn handle_connected(&mut self, now: Instant) -> Result<(), Error> {
        longport::Client::handle_connected(self, now)
    }
    fn provide_token(&mut self, now: Instant, token: &str) -> Result<(), Error> {
        longport::Client::provide_token(self, now, token)
    }
    fn send_request(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), Error> {
        longport::Client::send_request(self, now, cmd, timeout, body, out)
    }
    fn close(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        longport::Client::close(self, now, reason)
    }
    fn connect_timeout(&self) -> Duration {
        self.config().connect_timeout()
    }
    fn max_body(&self) -> usize {
        self.config().max_body()
    }
    fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        longport::Client::set_wall_clock(self, now, unix_ms);
    }
    fn session_id(&self) -> Option<&str> {
        longport::Client::session_id(self)
    }
    fn in_flight(&self) -> usize {
        longport::Client::in_flight(self)
    }
}

/// Bytes a receive buffer needs for the largest packet a client with `max_body` accepts
/// (request header, body, signature trailer)
#[must_use]
pub const fn rx_capacity(max_body: usize) -> usize {
    tether_net::longport::wire::REQUEST_HEADER_LEN
        + max_body
        + tether_net::longport::wire::SIGNATURE_LEN
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_receive_buffer_holds_the_largest_packet_plus_35_bytes() {
        // an 11-byte request header and the 24-byte signature trailer around the body: the
        // "max_body below RX - 35" of the embassy client's documentation
        assert_eq!(super::rx_capacity(0), 35);
        assert_eq!(super::rx_capacity(1000), 1035);
    }
}
