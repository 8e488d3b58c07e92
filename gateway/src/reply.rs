//! What a business handler gives back: one response (status + body) and the pushes that follow it

use prost::Message as _;

/// Response status bytes (the packet header's status field)
///
/// Values as in the LongPort socket protocol (`openapi-protocol/go/status.go`); the official Rust
/// SDK turns any non-zero status into `ResponseError { status, detail }`.
pub mod status {
    /// Success: the body is the command's response message
    pub const SUCCESS: u8 = 0;
    /// Server timeout
    pub const SERVER_TIMEOUT: u8 = 1;
    /// Bad request (invalid request, rate limited)
    pub const BAD_REQUEST: u8 = 3;
    /// Unauthenticated
    pub const UNAUTHENTICATED: u8 = 5;
    /// Permission denied (e.g. the connection quota)
    pub const PERMISSION_DENIED: u8 = 6;
    /// Server internal error; the real gateway also uses it for business failures (no quote
    /// access, symbol not found, too many subscriptions)
    pub const SERVER_INTERNAL_ERROR: u8 = 7;
}

/// Business error codes carried in the `Error` body of a non-zero status
///
/// From the error tables of the quote pull pages of the LongPort OpenAPI docs
/// (<https://open.longportapp.com/docs/quote/pull/quote>).
pub mod code {
    /// Invalid request (also: symbol not found / bad parameters)
    pub const INVALID_REQUEST: u64 = 301600;
    /// Server error
    pub const SERVER_ERROR: u64 = 301602;
    /// No quote
    pub const NO_QUOTE: u64 = 301603;
    /// No access
    pub const NO_ACCESS: u64 = 301604;
    /// Too many subscriptions
    pub const TOO_MANY_SUBSCRIPTIONS: u64 = 301605;
    /// Rate limited
    pub const RATE_LIMITED: u64 = 301606;
    /// Too many symbols or items in one request
    pub const TOO_MANY_ITEMS: u64 = 301607;
}

/// One push packet to send on a connection: command and encoded body
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Push command (101 quote, 18 trade notification, ...)
    pub cmd: u8,
    /// Encoded protobuf body
    pub body: Vec<u8>,
}

/// A handler's answer to one request
///
/// `status` and `body` form the response packet (same command and request id as the request);
/// `pushes` are sent after it, in order, on the same connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Response status byte ([`status`])
    pub status: u8,
    /// Response body: the command's response message, or an `Error` when `status != 0`
    pub body: Vec<u8>,
    /// Pushes to send after the response
    pub pushes: Vec<Push>,
}

impl Reply {
    /// Status 0 with `msg` encoded as the body
    pub fn ok(msg: &impl prost::Message) -> Self {
        Reply {
            status: status::SUCCESS,
            body: msg.encode_to_vec(),
            pushes: Vec::new(),
        }
    }

    /// A non-zero `status` with an `Error { code, msg }` body
    ///
    /// A zero `status` is raised to [`status::SERVER_INTERNAL_ERROR`]: an error never goes out
    /// as a success.
    pub fn error(status: u8, code: u64, msg: impl Into<String>) -> Self {
        let status = if status == status::SUCCESS {
            status::SERVER_INTERNAL_ERROR
        } else {
            status
        };
        Reply {
            status,
            body: error_body(code, msg),
            pushes: Vec::new(),
        }
    }

    /// Status 3 with `Error { 301600, msg }`
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::error(status::BAD_REQUEST, code::INVALID_REQUEST, msg)
    }

    /// The answer to a command the gateway does not implement: status 3, `Error { 301600, .. }`
    /// naming the command
    pub fn unsupported(cmd: u8) -> Self {
        Self::invalid_request(format!(
            "command {cmd} is not supported by the offline gateway"
        ))
    }

    /// The same reply with `pushes` appended
    #[must_use]
    pub fn with_pushes(mut self, pushes: impl IntoIterator<Item = Push>) -> Self {
        self.pushes.extend(pushes);
        self
    }

    /// The decoded `Error` body of a non-zero status (`None` for a success or a bad body)
    pub fn error_detail(&self) -> Option<longport_proto::Error> {
        if self.status == status::SUCCESS {
            return None;
        }
        longport_proto::Error::decode(self.body.as_slice()).ok()
    }
}

/// The encoded `Error { code, msg }` body (`qop.error.Error` in `longport-proto`)
pub fn error_body(code: u64, msg: impl Into<String>) -> Vec<u8> {
    longport_proto::Error {
        code,
        msg: msg.into(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_matches_the_published_vector() {
        // Error{301600, "invalid request"}: tag 1 varint a0 b4 12 (301600 = 0x49A20), tag 2 len 15
        let body = error_body(301600, "invalid request");
        let mut expected = vec![0x08, 0xa0, 0xb4, 0x12, 0x12, 0x0f];
        expected.extend_from_slice(b"invalid request");
        assert_eq!(body, expected);
    }

    #[test]
    fn an_error_is_never_status_zero() {
        let r = Reply::error(0, 1, "x");
        assert_eq!(r.status, status::SERVER_INTERNAL_ERROR);
        assert_eq!(r.error_detail().unwrap().code, 1);
    }

    #[test]
    fn unsupported_names_the_command() {
        let r = Reply::unsupported(14);
        assert_eq!(r.status, status::BAD_REQUEST);
        let e = r.error_detail().unwrap();
        assert_eq!(e.code, code::INVALID_REQUEST);
        assert!(e.msg.contains("command 14"), "{}", e.msg);
    }
}
