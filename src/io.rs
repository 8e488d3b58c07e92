//! The I/O vocabulary every machine shares: [`Transmit`], [`Received`], [`BufferTooSmall`]

use core::fmt;

/// What kind of frame a [`Transmit`] is, so the caller knows how to put it on its transport
///
/// Datagram and stream machines always use one kind; the LongPort WebSocket transport uses the
/// binary, ping, pong and close kinds, which the caller's WebSocket library turns into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameKind {
    /// One UDP datagram (game profile)
    Datagram,
    /// Bytes to append to a byte stream (LongPort over TCP)
    Stream,
    /// One WebSocket binary message holding exactly one packet
    WsBinary,
    /// A WebSocket Ping frame; the written bytes are its payload
    WsPing,
    /// A WebSocket Pong frame; the written bytes are its payload
    WsPong,
    /// A WebSocket Close frame with this status code; the written bytes are the reason text.
    /// After it, the caller closes the transport.
    WsClose(u16),
}

/// One frame the caller must send: `buf[..len]` of the buffer given to `poll_transmit`, to `to`
#[must_use = "a Transmit describes bytes that must be sent"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit<P> {
    /// Destination: `()` for clients, the caller's peer key for servers
    pub to: P,
    /// Number of bytes written at the start of the caller's buffer
    pub len: usize,
    /// How to frame those bytes on the transport
    pub kind: FrameKind,
}

/// What one `handle_input` call did with the caller's bytes
///
/// * `consumed` bytes may be dropped from the caller's buffer. Datagram and message transports
///   always consume the whole input (also when it was dropped as invalid).
/// * [`Received::need`] is set by stream transports when the buffered bytes do not hold a whole
///   frame yet: it is the total number of bytes the next frame needs (so the caller can size its
///   buffer); nothing was consumed and the caller should read more.
/// * [`Received::app`] borrows application data out of the input (game chunk packets, LongPort
///   business packets): it is never copied into the machine.
#[must_use = "Received reports consumed bytes and may carry application data"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Received<T> {
    consumed: usize,
    need: Option<usize>,
    app: Option<T>,
}

impl<T> Received<T> {
    /// `n` bytes consumed, nothing for the application
    pub const fn consumed(n: usize) -> Self {
        Received {
            consumed: n,
            need: None,
            app: None,
        }
    }

    /// Nothing consumed: the next frame needs `total` buffered bytes
    pub const fn need(total: usize) -> Self {
        Received {
            consumed: 0,
            need: Some(total),
            app: None,
        }
    }

    /// `n` bytes consumed carrying application data `app`
    pub const fn with_app(n: usize, app: T) -> Self {
        Received {
            consumed: n,
            need: None,
            app: Some(app),
        }
    }

    /// `n` bytes consumed, carrying `app` if there is one
    pub(crate) const fn maybe(n: usize, app: Option<T>) -> Self {
        Received {
            consumed: n,
            need: None,
            app,
        }
    }

    /// Bytes the caller may discard from the front of its input
    #[must_use]
    pub const fn bytes_consumed(&self) -> usize {
        self.consumed
    }

    /// Total bytes the next frame needs, when the input held only part of it
    #[must_use]
    pub const fn needed(&self) -> Option<usize> {
        self.need
    }

    /// The application data, if any
    #[must_use]
    pub const fn app(&self) -> Option<&T> {
        self.app.as_ref()
    }

    /// The application data, by value
    #[must_use]
    pub fn into_app(self) -> Option<T> {
        self.app
    }

    /// Map the application data
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Received<U> {
        Received {
            consumed: self.consumed,
            need: self.need,
            app: self.app.map(f),
        }
    }
}

/// The caller's output buffer cannot hold the next frame; nothing was written and no state changed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Exact number of bytes the frame needs
    pub required: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "output buffer too small: {} bytes required",
            self.required
        )
    }
}

impl core::error::Error for BufferTooSmall {}

/// Text a peer sent (a close reason, an error message), borrowed from the input it arrived in
///
/// Machines never copy peer texts into events; they hand them out borrowed, inside the
/// application value of the input that carried them. The bytes are exactly what the peer sent:
/// [`PeerText::to_str`] gives them as `&str` when they are valid UTF-8, and `Display` prints them
/// safely whatever they are (invalid UTF-8 becomes U+FFFD, control characters become spaces), so
/// a hostile peer cannot inject terminal escapes or line breaks into a log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerText<'a>(&'a [u8]);

impl<'a> PeerText<'a> {
    /// Wrap raw bytes
    #[must_use]
    pub const fn new(bytes: &'a [u8]) -> Self {
        PeerText(bytes)
    }

    /// The bytes as the peer sent them
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The text as `&str`, when it is valid UTF-8 (control characters included)
    #[must_use]
    pub fn to_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.0).ok()
    }

    /// Length in bytes
    #[must_use]
    pub const fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the peer sent no text
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The printable characters of `Display`, one by one
    fn printable(&self) -> impl Iterator<Item = char> + 'a {
        self.0.utf8_chunks().flat_map(|chunk| {
            let bad = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
            chunk
                .valid()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .chain(bad)
        })
    }
}

impl PartialEq<str> for PeerText<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for PeerText<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.printable() {
            f.write_char(c)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                for e in c.escape_debug() {
                    f.write_char(e)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_char('"')
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for PeerText<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=[u8]:a}", self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_constructors() {
        let r: Received<u8> = Received::need(30);
        assert_eq!(
            (r.bytes_consumed(), r.needed(), r.app()),
            (0, Some(30), None)
        );
        let r = Received::with_app(7, 1u8).map(|x| x + 1);
        assert_eq!(
            (r.bytes_consumed(), r.needed(), r.into_app()),
            (7, None, Some(2))
        );
    }

    #[test]
    fn peer_text_prints_safely_and_keeps_the_bytes() {
        extern crate alloc;
        use alloc::format;
        use alloc::string::ToString;
        let t = PeerText::new(b"bye\x1b[31m\nnow\xff!");
        assert_eq!(t.to_string(), "bye [31m now\u{fffd}!");
        assert_eq!(format!("{t:?}"), "\"bye\\u{1b}[31m\\nnow\\xff!\"");
        assert_eq!(t.to_str(), None);
        assert_eq!(t.len(), 14);
        assert_eq!(t.as_bytes(), b"bye\x1b[31m\nnow\xff!");
        let ok = PeerText::new("Kicked (spam) é".as_bytes());
        assert_eq!(ok.to_str(), Some("Kicked (spam) é"));
        assert_eq!(ok, "Kicked (spam) é");
        assert!(PeerText::default().is_empty() && !ok.is_empty());
    }

    #[test]
    fn buffer_too_small_displays_size() {
        extern crate alloc;
        use alloc::string::ToString;
        assert!(BufferTooSmall { required: 12 }.to_string().contains("12"));
    }

    #[test]
    fn peer_text_compares_with_str_by_its_bytes() {
        let t = PeerText::new(b"bye");
        // against `str` and against `&str`
        assert!(t == *"bye");
        assert!(t != *"by");
        assert!(t != *"bye!");
        assert!(t == "bye");
        assert!(t != "Bye");
        // invalid UTF-8 equals no string, not even its replacement
        let bad = PeerText::new(b"\xff");
        assert!(bad != *"\u{fffd}" && bad != "\u{fffd}");
    }
}
