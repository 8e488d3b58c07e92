extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;
#[cfg(feature = "control-huffman")]
use crate::game::test_util::compressed_control;
use crate::game::test_util::{hex, ms};
use crate::io::PeerText;

const TOK: Token = Token([0x12, 0x34, 0x56, 0x78]);

/// Every frame the client has queued, as byte vectors
fn drain<const E: usize>(c: &mut Client<E>, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..t.len].to_vec());
    }
    out
}

fn events<const E: usize>(c: &mut Client<E>) -> Vec<ClientEvent> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

/// Feed one datagram; the payload of a chunk packet it delivered
fn feed<const E: usize>(c: &mut Client<E>, now: Instant, bytes: &[u8]) -> Option<Vec<u8>> {
    feed_app(c, now, bytes).and_then(|a| a.chunks().map(|c| c.payload.to_vec()))
}

/// Feed one datagram; what it delivered to the application
fn feed_app<'a, const E: usize>(
    c: &mut Client<E>,
    now: Instant,
    bytes: &'a [u8],
) -> Option<ClientApp<'a>> {
    let r = c.handle_input(now, (), bytes).unwrap();
    assert_eq!(r.bytes_consumed(), bytes.len());
    r.into_app()
}

/// A token-mode client that connected at 0 ms (its CONNECT handed out)
fn connecting() -> Client {
    let mut c = Client::new(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    assert_eq!(drain(&mut c, ms(0)).len(), 1);
    c
}

/// A token-mode client online at 0 ms with token TOK (CONNECT and ACCEPT drained)
fn online() -> Client {
    let mut c = connecting();
    feed(&mut c, ms(0), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    assert_eq!(drain(&mut c, ms(0)), [hex("10 00 00 03 12 34 56 78")]);
    assert_eq!(
        events(&mut c),
        [ClientEvent::Connected { token: Some(TOK) }]
    );
    c
}

fn closed_cause<const E: usize>(c: &mut Client<E>) -> CloseCause {
    match events(c).as_slice() {
        [ClientEvent::Closed { cause }] => *cause,
        other => panic!("expected one Closed event, got {other:?}"),
    }
}

#[test]
fn connect_sends_token_form_and_vanilla_form() {
    let mut c = Client::new(ClientConfig::default());
    assert_eq!(c.state(), ClientState::Offline);
    assert_eq!(c.poll_timeout(), None);
    c.connect(ms(0)).unwrap();
    assert_eq!(c.connect(ms(0)), Err(Error::AlreadyStarted));
    assert_eq!(
        drain(&mut c, ms(0)),
        [hex("10 00 00 01 54 4b 45 4e ff ff ff ff")]
    );

    let mut v = Client::new(ClientConfig::new().with_vanilla(true));
    v.connect(ms(0)).unwrap();
    assert_eq!(drain(&mut v, ms(0)), [hex("10 00 00 01")]);
}

#[test]
fn connect_resent_every_500ms_then_connect_timeout() {
    let mut c = Client::new(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    assert_eq!(drain(&mut c, ms(0)).len(), 1);
    assert_eq!(c.poll_timeout(), Some(ms(500)));
    c.handle_timeout(ms(499));
    assert!(drain(&mut c, ms(499)).is_empty());
    c.handle_timeout(ms(500));
    assert_eq!(
        drain(&mut c, ms(500)),
        [hex("10 00 00 01 54 4b 45 4e ff ff ff ff")]
    );
    assert_eq!(c.poll_timeout(), Some(ms(1000)));
    let mut t = 1000;
    while t < 10_000 {
        c.handle_timeout(ms(t));
        assert_eq!(drain(&mut c, ms(t)).len(), 1, "resend at {t} ms");
        t += 500;
    }
    assert_eq!(c.stats().connects_sent, 20);
    assert_eq!(c.poll_timeout(), Some(ms(10_000)));
    c.handle_timeout(ms(10_000));
    assert_eq!(closed_cause(&mut c), CloseCause::ConnectTimeout);
    assert!(drain(&mut c, ms(10_000)).is_empty());
    assert_eq!(c.state(), ClientState::Closed);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn token_accept_goes_online() {
    let c = online();
    assert_eq!(c.state(), ClientState::Online);
    assert_eq!(c.token(), Some(TOK));
}

#[test]
fn bare_connect_accept_means_vanilla_connection() {
    let mut c = connecting();
    feed(&mut c, ms(100), &hex("10 00 00 02"));
    assert_eq!(events(&mut c), [ClientEvent::Connected { token: None }]);
    assert_eq!(drain(&mut c, ms(100)), [hex("10 00 00 03")]);
    c.handle_timeout(ms(350));
    assert_eq!(drain(&mut c, ms(350)), [hex("10 00 00 00")]);
    // vanilla connection: a packet with trailing bytes is not token-checked
    feed(&mut c, ms(400), &hex("10 00 00 00"));
    assert_eq!(c.stats().keep_alives_received, 1);
}

#[test]
fn vanilla_mode_ignores_offered_token() {
    let mut c = Client::new(ClientConfig::new().with_vanilla(true));
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    assert_eq!(events(&mut c), [ClientEvent::Connected { token: None }]);
    assert_eq!(drain(&mut c, ms(1)), [hex("10 00 00 03")]);
}

#[test]
fn keep_alive_cadence_and_chunk_traffic_defers_it() {
    let mut c = online();
    // ACCEPT went out at 0 ms
    assert_eq!(c.poll_timeout(), Some(ms(250)));
    c.handle_timeout(ms(249));
    assert!(drain(&mut c, ms(249)).is_empty());
    c.handle_timeout(ms(250));
    assert_eq!(drain(&mut c, ms(250)), [hex("10 00 00 00 12 34 56 78")]);
    assert_eq!(c.poll_timeout(), Some(ms(500)));
    // a chunk packet at 400 ms counts as activity
    let mut out = [0u8; 64];
    let t = c
        .send_chunks(ms(400), Flags::default(), 1, &[0xAA, 0xBB], &mut out)
        .unwrap();
    assert_eq!(&out[..t.len], hex("00 00 01 aa bb 12 34 56 78").as_slice());
    assert_eq!(c.poll_timeout(), Some(ms(650)));
    // a chunk packet is never a control packet: the control flag asked for is cleared
    let control = Flags {
        control: true,
        ..Flags::default()
    };
    let t = c
        .send_chunks(ms(400), control, 1, &[0xAA, 0xBB], &mut out)
        .unwrap();
    assert_eq!(&out[..t.len], hex("00 00 01 aa bb 12 34 56 78").as_slice());
    c.handle_timeout(ms(500));
    assert!(drain(&mut c, ms(500)).is_empty());
    c.handle_timeout(ms(650));
    assert_eq!(drain(&mut c, ms(650)).len(), 1);
    assert_eq!(c.stats().keep_alives_sent, 2);
    assert_eq!(c.stats().chunk_packets_sent, 2);
}

#[test]
fn timeout_exactly_at_deadline_sends_nothing() {
    let mut c = online();
    feed(&mut c, ms(2_000), &hex("10 00 00 00 12 34 56 78"));
    let deadline = ms(12_000);
    // keep-alives until just before the deadline
    let mut now = ms(2_000);
    while let Some(t) = c.poll_timeout() {
        if t >= deadline {
            break;
        }
        now = t.max(now);
        c.handle_timeout(now);
        let _ = drain(&mut c, now);
    }
    assert!(now < deadline);
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle_timeout(Instant::from_micros(deadline.as_micros() - 1));
    assert_eq!(c.state(), ClientState::Online);
    c.handle_timeout(deadline);
    assert_eq!(closed_cause(&mut c), CloseCause::Timeout);
    assert!(drain(&mut c, deadline).is_empty());
}

#[test]
fn local_close_with_reason_then_silence() {
    let mut c = online();
    c.close(ms(10), "bye").unwrap();
    assert_eq!(closed_cause(&mut c), CloseCause::Local);
    assert_eq!(
        drain(&mut c, ms(10)),
        [hex("10 00 00 04 62 79 65 00 12 34 56 78")]
    );
    assert_eq!(c.close(ms(11), "again"), Err(Error::Closed));
    feed(&mut c, ms(12), &hex("10 00 00 00 12 34 56 78"));
    assert_eq!(c.stats().ignored_closed, 1);
    c.handle_timeout(ms(60_000));
    assert!(drain(&mut c, ms(60_000)).is_empty());
    assert!(events(&mut c).is_empty());
    let mut out = [0u8; 16];
    assert_eq!(
        c.send_chunks(ms(1), Flags::default(), 0, &[], &mut out),
        Err(Error::Closed)
    );
}

/// The reason bytes of a CLOSE the online client `TOK` sent (between the id and the NUL)
fn close_reason_sent(frame: &[u8]) -> &[u8] {
    assert_eq!(&frame[..4], hex("10 00 00 04").as_slice());
    assert_eq!(&frame[frame.len() - 5..], [0, 0x12, 0x34, 0x56, 0x78]);
    &frame[4..frame.len() - 5]
}

#[test]
fn a_long_close_reason_is_sent_cut_to_what_the_client_keeps_on_a_char_boundary() {
    // 29 ASCII bytes, then "é" (2 bytes) across the 30-byte limit: the cut goes before it
    let reason = "Leaving for a little while no\u{e9}\u{e9} and more text after it";
    let mut c = online();
    c.close(ms(10), reason).unwrap();
    let frames = drain(&mut c, ms(10));
    assert_eq!(frames.len(), 1);
    assert_eq!(
        close_reason_sent(&frames[0]),
        b"Leaving for a little while no"
    );
    // exactly KEPT_REASON_LEN ASCII bytes go out whole, one more is cut
    for (len, sent) in [
        (KEPT_REASON_LEN, KEPT_REASON_LEN),
        (KEPT_REASON_LEN + 1, KEPT_REASON_LEN),
    ] {
        let text = "r".repeat(len);
        let mut c = online();
        c.close(ms(10), &text).unwrap();
        let frames = drain(&mut c, ms(10));
        assert_eq!(close_reason_sent(&frames[0]).len(), sent, "{len}");
    }
}

#[test]
fn a_static_close_reason_goes_out_whole_up_to_what_ddnet_reads() {
    static LONG: &str =
        "You are leaving this server because the operator of this bot asked for it, \
        and this sentence is long enough to pass the 127 bytes DDNet reads at most \u{e9}\u{e9}";
    assert!(LONG.len() > 127);
    let mut c = online();
    c.close_static(ms(10), LONG).unwrap();
    assert_eq!(closed_cause(&mut c), CloseCause::Local);
    let frames = drain(&mut c, ms(10));
    let sent = close_reason_sent(&frames[0]);
    assert_eq!(sent, Reason::from_str(LONG).as_bytes());
    assert!(
        sent.len() > KEPT_REASON_LEN && sent.len() <= 127,
        "{}",
        sent.len()
    );
    assert!(core::str::from_utf8(sent).is_ok());
    // cut at a NUL too; refused like close
    let mut c = online();
    c.close_static(ms(10), "bye\0hidden").unwrap();
    assert_eq!(close_reason_sent(&drain(&mut c, ms(10))[0]), b"bye");
    assert_eq!(c.close_static(ms(11), "again"), Err(Error::Closed));
    let mut c: Client<1> = Client::with_capacities(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    assert_eq!(c.close_static(ms(2), "full"), Err(Error::QueueFull));
    assert_eq!(c.state(), ClientState::Online);
}

#[test]
fn the_servers_long_reason_is_handed_out_whole_and_kept_cut() {
    let mut c = online();
    // 29 ASCII bytes, then a 3-byte character across the limit, then more
    let text = "Kicked by the server operator\u{20ac} because of spam in the chat";
    let mut pkt = hex("10 00 00 04");
    pkt.extend_from_slice(text.as_bytes());
    pkt.push(0);
    pkt.extend_from_slice(&TOK.0);
    let app = feed_app(&mut c, ms(5), &pkt).expect("the reason");
    assert_eq!(app.close_reason().and_then(|r| r.to_str()), Some(text));
    let kept = c.peer_close_reason().unwrap();
    assert_eq!(kept.to_str(), Some("Kicked by the server operator"));
}

#[test]
fn a_server_reason_of_continuation_bytes_only_is_kept_cut_without_a_panic() {
    // not UTF-8: 40 bytes 0x80 (found by the game_client fuzz target: the cut walked back past
    // the first byte). The cut backs off at most three bytes, the longest a UTF-8 sequence
    // can still be open
    for bytes in [
        vec![0x80u8; 40],
        vec![0xbfu8; 31],
        [vec![b'a'; 27], vec![0x80; 10]].concat(),
    ] {
        let mut c = online();
        let mut pkt = hex("10 00 00 04");
        pkt.extend_from_slice(&bytes);
        pkt.push(0);
        pkt.extend_from_slice(&TOK.0);
        let app = feed_app(&mut c, ms(5), &pkt).expect("the reason");
        assert_eq!(app.close_reason().map(|r| r.as_bytes()), Some(&bytes[..]));
        let kept = c.peer_close_reason().unwrap();
        assert_eq!(kept.as_bytes(), &bytes[..KEPT_REASON_LEN - 3]);
    }
}

#[test]
fn counters_are_kept_in_32_bits_and_saturate() {
    let mut c = online();
    c.stats.dropped_malformed = u32::MAX - 1;
    for _ in 0..3 {
        assert_eq!(feed_app(&mut c, ms(1), &hex("10 00")), None);
    }
    assert_eq!(c.stats().dropped_malformed, u64::from(u32::MAX));
    assert_eq!(c.state(), ClientState::Online);
}

#[test]
fn close_carries_ack_and_empty_reason() {
    let mut c = online();
    c.set_ack(1);
    c.close(ms(10), "").unwrap();
    assert_eq!(drain(&mut c, ms(10)), [hex("10 01 00 04 12 34 56 78")]);
}

#[test]
fn close_before_connect_sends_nothing_and_while_connecting_is_bare() {
    let mut c = Client::new(ClientConfig::default());
    c.close(ms(0), "x").unwrap();
    assert_eq!(closed_cause(&mut c), CloseCause::Local);
    assert!(drain(&mut c, ms(0)).is_empty());

    let mut c = Client::new(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    c.close(ms(1), "").unwrap();
    // the queued CONNECT is dropped, only the CLOSE goes out
    assert_eq!(drain(&mut c, ms(1)), [hex("10 00 00 04")]);
}

#[test]
fn peer_close_with_reason_online_and_while_connecting() {
    let mut c = online();
    let mut pkt = hex("10 00 00 04");
    pkt.extend_from_slice(b"Kicked (ci test kick)\0");
    pkt.extend_from_slice(&TOK.0);
    let app = feed_app(&mut c, ms(5), &pkt).expect("the reason");
    assert_eq!(
        app.close_reason().and_then(|r| r.to_str()),
        Some("Kicked (ci test kick)")
    );
    assert_eq!(closed_cause(&mut c), CloseCause::Peer);
    assert!(drain(&mut c, ms(5)).is_empty());

    let mut c = connecting();
    let mut pkt = hex("10 00 00 04");
    pkt.extend_from_slice(b"This server is full\0");
    pkt.extend_from_slice(&[1, 2, 3, 4]);
    let app = feed_app(&mut c, ms(1), &pkt);
    assert_eq!(
        app,
        Some(ClientApp::Close {
            reason: PeerText::new(b"This server is full")
        })
    );
    assert_eq!(closed_cause(&mut c), CloseCause::Peer);
}

#[test]
fn wrong_token_dropped_and_counted() {
    let mut c = online();
    feed(&mut c, ms(5), &hex("10 00 00 04 78 00 01 02 03 04"));
    feed(&mut c, ms(5), &hex("00 00 01 aa 01 02 03 04"));
    feed(&mut c, ms(5), &hex("10 00 00"));
    assert_eq!(c.stats().dropped_wrong_token, 2);
    assert_eq!(c.stats().dropped_malformed, 1);
    assert_eq!(c.state(), ClientState::Online);
    assert!(events(&mut c).is_empty());
}

#[test]
fn bad_ack_dropped_and_counted_until_sequence_reported() {
    let mut c = online();
    let close_ack5 = hex("10 05 00 04 79 00 12 34 56 78");
    feed(&mut c, ms(5), &close_ack5);
    assert_eq!(c.stats().dropped_bad_ack, 1);
    assert_eq!(c.state(), ClientState::Online);
    c.set_sequence(5);
    feed(&mut c, ms(6), &hex("10 03 00 00 12 34 56 78"));
    assert_eq!(c.peer_ack(), 3);
    // below peer_ack now: dropped
    feed(&mut c, ms(7), &hex("10 02 00 00 12 34 56 78"));
    assert_eq!(c.stats().dropped_bad_ack, 2);
    feed(&mut c, ms(8), &close_ack5);
    assert_eq!(closed_cause(&mut c), CloseCause::Peer);
}

#[test]
#[cfg(feature = "server-info")]
fn an_info_request_carries_the_token_cut_to_its_form() {
    // the 0.6 request has one token byte, DDNet's extended one three
    use crate::game::connless::InfoRequest;
    for (extended, token) in [(false, 0x78), (true, 0x34_5678)] {
        let mut c: Client = Client::with_capacities(ClientConfig::default());
        c.request_info(ms(0), 0x1234_5678, extended).unwrap();
        let sent = drain(&mut c, ms(0));
        assert_eq!(sent.len(), 1);
        let req = InfoRequest::parse(&sent[0]).unwrap();
        assert_eq!((req.extended, req.token), (extended, token));
    }
}

#[test]
fn confirmed_once_the_server_sends_more_than_connect_accept() {
    let mut c = connecting();
    assert!(!c.is_confirmed());
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    assert_eq!(c.state(), ClientState::Online);
    assert!(!c.is_confirmed(), "only CONNECT_ACCEPT so far");
    feed(&mut c, ms(2), &hex("10 00 00 00 12 34 56 78"));
    assert!(c.is_confirmed(), "a KEEP_ALIVE with the token");
    feed(&mut c, ms(3), &hex("10 00 00 04 12 34 56 78"));
    assert_eq!(c.state(), ClientState::Closed);
    assert!(!c.is_confirmed());
}

/// CONNECT_ACCEPT with token `t` (hex of four bytes)
fn connect_accept_with(t: &str) -> Vec<u8> {
    hex(&std::format!("10 00 00 02 54 4b 45 4e {t}"))
}

#[test]
fn the_server_packets_pick_the_earlier_candidate_token() {
    // CONNECT_ACCEPT with 12345678, then another with aabbccdd (which becomes current); the
    // server's keep-alive carries 12345678: that candidate wins
    let mut c = connecting();
    feed(&mut c, ms(1), &connect_accept_with("12 34 56 78"));
    feed(&mut c, ms(2), &connect_accept_with("aa bb cc dd"));
    assert_eq!(c.token(), Some(Token([0xaa, 0xbb, 0xcc, 0xdd])));
    assert_eq!(c.stats().token_candidates, 1);
    feed(&mut c, ms(3), &hex("10 00 00 00 12 34 56 78"));
    assert_eq!(c.token(), Some(TOK));
    assert!(c.is_confirmed());
    assert_eq!(c.stats().keep_alives_received, 1);
    // confirmed: a CONNECT_ACCEPT with another token is a packet with the wrong token
    feed(&mut c, ms(4), &connect_accept_with("aa bb cc dd"));
    assert_eq!(c.stats().dropped_wrong_token, 1);
    assert_eq!(c.stats().token_candidates, 1);
    assert_eq!(c.token(), Some(TOK));
}

#[test]
fn a_keep_alive_with_the_current_token_wins_over_a_bare_candidate() {
    // a bare CONNECT_ACCEPT (vanilla server?) first, then one with 12345678: the keep-alive
    // with 12345678 confirms the token, it does not fall back to the bare candidate
    let mut c = connecting();
    feed(&mut c, ms(1), &hex("10 00 00 02"));
    feed(&mut c, ms(2), &connect_accept_with("12 34 56 78"));
    assert_eq!(c.token(), Some(TOK));
    feed(&mut c, ms(3), &hex("10 00 00 00 12 34 56 78"));
    assert_eq!(c.token(), Some(TOK));
    assert!(c.is_confirmed());
}

#[test]
fn a_chunk_packet_is_no_connect_accept_whatever_its_first_payload_byte() {
    // not confirmed yet; a chunk packet whose payload starts with 02 (CONNECT_ACCEPT's id in a
    // control packet) is read as the chunk packet it is, with the token, and confirms
    let mut c = online();
    assert!(!c.is_confirmed());
    let app = feed(&mut c, ms(5), &hex("00 00 01 02 43 12 34 56 78"));
    assert_eq!(app, Some(vec![0x02, 0x43]));
    assert!(c.is_confirmed());
}

/// A vanilla client online (bare CONNECT_ACCEPT answered)
#[cfg(feature = "control-huffman")]
fn vanilla_online() -> Client {
    let mut c = Client::new(ClientConfig::default().with_vanilla(true));
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02"));
    let _ = drain(&mut c, ms(1));
    assert_eq!(c.state(), ClientState::Online);
    c
}

/// CLOSE's payload with a reason of `len` bytes
#[cfg(feature = "control-huffman")]
fn close_payload(len: usize) -> Vec<u8> {
    let mut plain = vec![0x04];
    plain.extend(core::iter::repeat_n(b'r', len));
    plain.push(0);
    plain
}

#[test]
#[cfg(feature = "control-huffman")]
fn a_compressed_close_fits_the_small_buffer_or_is_dropped() {
    // the CLOSE is decoded into a 192-byte buffer: 3 header bytes, then id, reason and NUL; a
    // reason of 187 bytes fills it exactly and is understood (the client keeps 30 bytes of it)
    for reason in [98, 187] {
        let mut c = vanilla_online();
        let pkt = compressed_control(&close_payload(reason));
        let app = feed_app(&mut c, ms(2), &pkt);
        assert!(
            matches!(app, Some(ClientApp::Close { .. })),
            "{reason}: {app:?}"
        );
        assert_eq!(c.state(), ClientState::Closed);
        let kept = c.peer_close_reason().unwrap();
        assert_eq!(
            kept.as_bytes().len(),
            reason.min(KEPT_REASON_LEN),
            "{reason}"
        );
        assert_eq!(c.stats().dropped_malformed, 0);
    }
    // one byte more does not fit: dropped as malformed, the connection stays
    let mut c = vanilla_online();
    assert_eq!(
        feed_app(&mut c, ms(2), &compressed_control(&close_payload(188))),
        None
    );
    assert_eq!(c.state(), ClientState::Online);
    assert_eq!(c.stats().dropped_malformed, 1);
}

#[test]
#[cfg(feature = "control-huffman")]
fn a_compressed_control_packet_on_a_token_connection_is_dropped() {
    // DDNet never compresses control packets: a compressed KEEP_ALIVE that even carries the
    // token is dropped as malformed on a token connection
    let mut c = online();
    assert_eq!(
        feed_app(&mut c, ms(2), &compressed_control(&hex("00 12 34 56 78"))),
        None
    );
    assert_eq!(c.stats().dropped_malformed, 1);
    assert_eq!(c.stats().keep_alives_received, 0);
    assert!(!c.is_confirmed());
}

#[test]
fn any_control_packet_with_the_token_confirms_and_only_warned_packets_count_warnings() {
    let mut c = online();
    // an ACCEPT from the server (odd, but a packet with the token after our ACCEPT)
    feed(&mut c, ms(5), &hex("10 00 00 03 12 34 56 78"));
    assert!(c.is_confirmed());
    assert_eq!(c.stats().warnings, 0);
    // a late CONNECT_ACCEPT with the current token: liveness, no second ACCEPT, no candidate
    feed(&mut c, ms(6), &connect_accept_with("12 34 56 78"));
    assert!(drain(&mut c, ms(6)).is_empty());
    assert_eq!(c.stats().token_candidates, 0);
    assert_eq!(c.token(), Some(TOK));
}

#[test]
fn a_vanilla_client_takes_no_token_from_a_later_connect_accept() {
    let mut c = Client::new(ClientConfig::default().with_vanilla(true));
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02"));
    assert_eq!(c.state(), ClientState::Online);
    feed(&mut c, ms(2), &connect_accept_with("12 34 56 78"));
    assert_eq!(c.token(), None);
    assert_eq!(c.stats().token_candidates, 0);
}

#[test]
fn the_reported_sequence_is_taken_modulo_1024() {
    let mut c = online();
    // 1029 is sequence 5 of the 10-bit space: acks 0..=5 are in range, 6 is not
    c.set_sequence(1024 + 5);
    feed(&mut c, ms(5), &hex("10 06 00 00 12 34 56 78"));
    assert_eq!(c.stats().dropped_bad_ack, 1);
    assert_eq!(c.peer_ack(), 0);
    feed(&mut c, ms(6), &hex("10 05 00 00 12 34 56 78"));
    assert_eq!(c.stats().dropped_bad_ack, 1);
    assert_eq!(c.peer_ack(), 5);
}

#[test]
fn a_closed_client_ignores_input_though_its_queue_is_full() {
    // both events of a life waiting in a queue of two: the client is closed, so input is taken
    // and ignored (counted), not refused for the full queue, and the events stay as they were
    let mut c: Client<2> = Client::with_capacities(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    let close = hex("10 00 00 04 12 34 56 78");
    feed(&mut c, ms(2), &close);
    assert_eq!(c.stats().ignored_closed, 0);
    feed(&mut c, ms(3), &close);
    assert_eq!(c.stats().ignored_closed, 1);
    assert_eq!(c.close(ms(3), "late"), Err(Error::Closed));
    assert_eq!(
        events(&mut c),
        [
            ClientEvent::Connected {
                token: Some(Token([0x12, 0x34, 0x56, 0x78]))
            },
            ClientEvent::Closed {
                cause: CloseCause::Peer
            }
        ]
    );
}

#[test]
fn connect_accept_with_nonzero_ack_is_dropped() {
    let mut c = connecting();
    feed(&mut c, ms(1), &hex("10 01 00 02 54 4b 45 4e 12 34 56 78"));
    assert_eq!(c.stats().dropped_bad_ack, 1);
    assert_eq!(c.state(), ClientState::Connecting);
}

#[test]
fn chunks_delivered_borrowed_and_refresh_liveness() {
    let mut c = online();
    let app = feed(&mut c, ms(9_000), &hex("00 00 01 42 43 12 34 56 78"));
    assert_eq!(app, Some(vec![0x42, 0x43]));
    assert_eq!(c.stats().chunk_packets_received, 1);
    // the timeout now runs from 9 s
    c.handle_timeout(ms(10_000));
    let _ = drain(&mut c, ms(10_000));
    assert_eq!(c.state(), ClientState::Online);
}

#[test]
#[cfg(not(feature = "control-huffman"))]
fn without_control_huffman_compressed_packets_are_dropped() {
    let mut c = online();
    let mut packed = [0u8; 32];
    let n = crate::game::huffman::compress(&hex("42 43 12 34 56 78"), &mut packed).unwrap();
    let mut pkt = hex("80 00 01");
    pkt.extend_from_slice(&packed[..n]);
    // the right token inside, but not decoded: dropped, not a sign of life
    assert_eq!(feed(&mut c, ms(10_001), &pkt), None);
    // a compressed CLOSE (what vanilla 0.6.4 sends) is not seen either
    let n = crate::game::huffman::compress(&hex("04 62 79 65 00"), &mut packed).unwrap();
    let mut close = hex("90 00 00");
    close.extend_from_slice(&packed[..n]);
    assert_eq!(feed(&mut c, ms(10_002), &close), None);
    assert_eq!(c.stats().dropped_malformed, 2);
    assert_eq!(c.stats().chunk_packets_received, 0);
    assert_eq!(c.state(), ClientState::Online);
}

#[test]
#[cfg(feature = "control-huffman")]
fn compressed_chunks_have_their_token_checked_in_passing() {
    let mut c = online();
    // a compressed packet is passed through still compressed, after its token (inside the
    // compressed data) was checked: the right token is accepted, a wrong one dropped
    let mut packed = [0u8; 32];
    let n = crate::game::huffman::compress(&hex("42 43 12 34 56 78"), &mut packed).unwrap();
    let mut pkt = hex("80 00 01");
    pkt.extend_from_slice(&packed[..n]);
    let app = feed(&mut c, ms(10_001), &pkt);
    assert_eq!(app.as_deref(), Some(&packed[..n]));
    let n = crate::game::huffman::compress(&hex("42 43 12 34 56 79"), &mut packed).unwrap();
    let mut pkt = hex("80 00 01");
    pkt.extend_from_slice(&packed[..n]);
    let wrong = c.stats().dropped_wrong_token;
    assert_eq!(feed(&mut c, ms(10_002), &pkt), None);
    assert_eq!(c.stats().dropped_wrong_token, wrong + 1);
    // undecodable: dropped as malformed
    let malformed = c.stats().dropped_malformed;
    assert_eq!(feed(&mut c, ms(10_003), &hex("80 00 01 ff ee")), None);
    assert_eq!(c.stats().dropped_malformed, malformed + 1);
}

#[test]
fn chunks_while_connecting_are_dropped() {
    let mut c = Client::new(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    assert_eq!(feed(&mut c, ms(1), &hex("00 00 01 42")), None);
    assert_eq!(c.stats().dropped_not_online, 1);
}

#[test]
fn send_chunks_errors_leave_state() {
    let mut c = online();
    let mut small = [0u8; 5];
    assert_eq!(
        c.send_chunks(ms(1), Flags::default(), 1, &[1, 2], &mut small),
        Err(Error::BufferTooSmall { required: 9 })
    );
    assert_eq!(c.stats().chunk_packets_sent, 0);
    let big = [0u8; 1394];
    let mut out = [0u8; 1500];
    assert_eq!(
        c.send_chunks(ms(1), Flags::default(), 1, &big, &mut out),
        Err(Error::TooLong {
            len: 1401,
            max: 1400
        })
    );
    // compressed: no token appended, ack carried
    c.set_ack(513);
    let flags = Flags {
        compression: true,
        ..Flags::default()
    };
    let t = c.send_chunks(ms(1), flags, 2, &[9], &mut out).unwrap();
    assert_eq!(&out[..t.len], hex("82 01 02 09").as_slice());
}

#[test]
fn buffer_too_small_keeps_frame_queued() {
    let mut c = Client::new(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    let mut small = [0u8; 4];
    assert_eq!(
        c.poll_transmit(ms(0), &mut small),
        Err(BufferTooSmall { required: 12 })
    );
    assert_eq!(c.stats().connects_sent, 0);
    assert_eq!(drain(&mut c, ms(0)).len(), 1);
}

#[test]
fn backwards_time_shifts_the_timeline() {
    let mut c = online();
    c.handle_timeout(ms(300));
    let _ = drain(&mut c, ms(300));
    // the caller's clock steps back 300 ms: no time passes, nothing is due
    c.handle_timeout(ms(1));
    assert!(drain(&mut c, ms(0)).is_empty());
    feed(&mut c, Instant::ZERO, &hex("10 00 00 00 12 34 56 78"));
    // the next keep-alive is due 250 ms after this packet, in the caller's clock
    assert_eq!(c.poll_timeout(), Some(ms(250)));
    let mut now = ms(250);
    while c.state() == ClientState::Online {
        c.handle_timeout(now);
        let _ = drain(&mut c, now);
        now = c.poll_timeout().unwrap_or(now);
    }
    // keep-alives kept going; the timeout came 10 s after the last packet
    assert_eq!(now, ms(10_000));
}

#[test]
fn full_event_queue_refuses_input_without_consuming() {
    let mut c: Client<1> = Client::with_capacities(ClientConfig::default());
    c.connect(ms(0)).unwrap();
    let _ = drain(&mut c, ms(0));
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    let close = hex("10 00 00 04 12 34 56 78");
    assert_eq!(c.handle_input(ms(2), (), &close), Err(Error::QueueFull));
    assert_eq!(c.close(ms(2), ""), Err(Error::QueueFull));
    assert_eq!(c.state(), ClientState::Online);
    assert_eq!(events(&mut c).len(), 1);
    feed(&mut c, ms(3), &close);
    assert_eq!(closed_cause(&mut c), CloseCause::Peer);
}

#[test]
fn at_most_one_closed_event() {
    let mut c = online();
    feed(&mut c, ms(1), &hex("10 00 00 04 12 34 56 78"));
    c.handle_timeout(ms(100_000));
    let _ = c.close(ms(100_001), "late");
    let closed = events(&mut c)
        .iter()
        .filter(|e| matches!(e, ClientEvent::Closed { .. }))
        .count();
    assert_eq!(closed, 1);
}

#[test]
fn late_connect_accept_gets_no_second_accept() {
    let mut c = connecting();
    c.handle_timeout(ms(500));
    assert_eq!(drain(&mut c, ms(500)).len(), 1, "CONNECT resent");
    let ca = hex("10 00 00 02 54 4b 45 4e 12 34 56 78");
    feed(&mut c, ms(600), &ca);
    assert_eq!(drain(&mut c, ms(600)), [hex("10 00 00 03 12 34 56 78")]);
    // the answer to the resent CONNECT, and a duplicate of it: liveness only
    feed(&mut c, ms(1_100), &ca);
    feed(&mut c, ms(1_101), &ca);
    assert!(drain(&mut c, ms(1_101)).is_empty());
    assert_eq!(
        events(&mut c),
        [ClientEvent::Connected { token: Some(TOK) }]
    );
}

/// Let the client's timers fire up to and including `until`; the frames sent, with times
fn run_until_t(c: &mut Client, until: Instant) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_timeout().filter(|t| *t <= until) {
        c.handle_timeout(t);
        out.extend(drain(c, t).into_iter().map(|f| (t, f)));
    }
    out
}

#[test]
fn accept_retry_resends_connect_until_answered() {
    let mut c = online();
    let connect = hex("10 00 00 01 54 4b 45 4e ff ff ff ff");
    let connects = |frames: &[(Instant, Vec<u8>)]| {
        frames
            .iter()
            .filter(|(_, f)| *f == connect)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
    };
    // the ACCEPT was lost; keep-alives go unanswered until the retry at 2 s, and every retry
    // CONNECT is lost too: it is resent every 500 ms
    let sent = run_until_t(&mut c, ms(3_600));
    assert_eq!(
        connects(&sent),
        [ms(2_000), ms(2_500), ms(3_000), ms(3_500)]
    );
    assert_eq!(c.stats().accept_retries, 1);
    assert_eq!(c.stats().connects_sent, 5);
    // the answer brings one ACCEPT and 2 s of waiting without CONNECTs
    feed(
        &mut c,
        ms(3_600),
        &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"),
    );
    assert_eq!(drain(&mut c, ms(3_600)), [hex("10 00 00 03 12 34 56 78")]);
    let sent = run_until_t(&mut c, ms(5_650));
    assert_eq!(connects(&sent), [ms(5_600)]);
    assert_eq!(c.stats().accept_retries, 2);
    // any other packet ends the recovery for good
    feed(&mut c, ms(5_700), &hex("10 00 00 00 12 34 56 78"));
    let sent = run_until_t(&mut c, ms(15_000));
    assert!(connects(&sent).is_empty());
    assert_eq!(c.stats().accept_retries, 2);
    assert_eq!(c.state(), ClientState::Online);
}

#[test]
fn keep_alive_carries_reported_ack() {
    let mut c = online();
    c.set_ack(1023 + 1024);
    assert_eq!(c.ack(), 1023);
    c.handle_timeout(ms(250));
    assert_eq!(drain(&mut c, ms(250)), [hex("13 ff 00 00 12 34 56 78")]);
}

/// Every interval and timeout set to `d`
fn config_all(d: Duration) -> ClientConfig {
    ClientConfig::new()
        .with_connect_resend(d)
        .with_connect_timeout(d)
        .with_keep_alive(d)
        .with_timeout(d)
        .with_accept_retry(Some(d))
}

#[test]
fn config_setters_clamp_zero_and_huge_values() {
    use crate::time::MAX_DELAY;
    let zero = config_all(Duration::ZERO);
    let one = Duration::from_millis(1);
    assert_eq!(
        (
            zero.connect_resend(),
            zero.connect_timeout(),
            zero.keep_alive(),
            zero.timeout(),
            zero.accept_retry()
        ),
        (one, one, one, one, Some(one))
    );
    let huge = config_all(Duration::MAX);
    assert_eq!(
        (
            huge.connect_resend(),
            huge.connect_timeout(),
            huge.keep_alive(),
            huge.timeout(),
            huge.accept_retry()
        ),
        (MAX_DELAY, MAX_DELAY, MAX_DELAY, MAX_DELAY, Some(MAX_DELAY))
    );
    // in range: kept; the defaults are what `new` documents
    let d = ClientConfig::default();
    assert_eq!(d, ClientConfig::new());
    assert_eq!(
        (
            d.connect_resend(),
            d.keep_alive(),
            d.timeout(),
            d.accept_retry()
        ),
        (
            Duration::from_millis(500),
            Duration::from_millis(250),
            Duration::from_secs(10),
            Some(Duration::from_secs(2))
        )
    );
    assert!(!d.vanilla() && d.with_vanilla(true).vanilla());
    assert_eq!(d.with_accept_retry(None).accept_retry(), None);
}

/// Drive a client with `config` through connect, handshake and idling, and check every deadline
/// it hands out: never `Instant::MAX`, never more than `MAX_DELAY` after the latest `now`, and
/// never at or before that `now` after its timers ran (no spinning)
fn check_deadlines(config: ClientConfig, start: Instant) {
    let check = crate::game::test_util::assert_sane_deadline::<Client>;
    let mut c = Client::new(config);
    let mut now = start;
    c.connect(now).unwrap();
    check(&c, now);
    let _ = drain(&mut c, now);
    feed(&mut c, now, &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    let _ = drain(&mut c, now);
    for _ in 0..50 {
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
        let _ = drain(&mut c, now);
        check(&c, now);
    }
}

#[test]
fn poll_timeout_stays_within_max_delay_and_never_spins() {
    let (zero, huge) = (config_all(Duration::ZERO), config_all(Duration::MAX));
    // a year of uptime, so that a deadline past MAX_DELAY would be visible
    let year = Instant::from_secs(365 * 24 * 3600);
    for config in [zero, huge, ClientConfig::default()] {
        check_deadlines(config, Instant::ZERO);
        check_deadlines(config, year);
    }
}

/// A deterministic xorshift for the backpressure test
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Random inputs and commands into clients with a one-entry event queue: a refusal
/// (`QueueFull`) changes nothing, and after a complete drain of `poll_transmit` and `poll_event`
/// the next input or command is never refused
#[test]
fn queue_full_changes_nothing_and_a_drain_always_makes_room() {
    let datagrams = [
        hex("10 00 00 02 54 4b 45 4e 12 34 56 78"),
        hex("10 00 00 02"),
        hex("10 00 00 00 12 34 56 78"),
        hex("10 00 00 04 62 79 65 00 12 34 56 78"),
        hex("10 00 00 04"),
        hex("00 00 01 aa 12 34 56 78"),
        hex("10 00 00 03 12 34 56 78"),
    ];
    let mut rng = 0x1234_5678_9abc_def1u64;
    let (mut refused, mut after_drain) = (0, 0);
    for _ in 0..1000 {
        let mut c: Client<1> = Client::with_capacities(ClientConfig::default());
        let mut now = ms(0);
        // mostly connecting, sometimes not yet
        if !xorshift(&mut rng).is_multiple_of(4) {
            c.connect(now).unwrap();
        }
        let mut drained = true;
        for _ in 0..40 {
            now += Duration::from_millis(xorshift(&mut rng) % 300);
            let pick = xorshift(&mut rng);
            let op = |c: &mut Client<1>| -> Result<(), Error> {
                match pick % 6 {
                    0 => c.connect(now),
                    1 => c.close(now, "bye"),
                    2 => {
                        let mut out = [0u8; 64];
                        c.send_chunks(now, Flags::default(), 1, b"x", &mut out)
                            .map(drop)
                    }
                    3 => {
                        c.handle_timeout(now);
                        Ok(())
                    }
                    _ => {
                        let d = &datagrams[(pick >> 8) as usize % datagrams.len()];
                        c.handle_input(now, (), d).map(drop)
                    }
                }
            };
            let before = std::format!("{c:?}");
            let r = op(&mut c);
            if drained {
                after_drain += 1;
                assert_ne!(r, Err(Error::QueueFull), "refused after a complete drain");
            }
            if r == Err(Error::QueueFull) {
                refused += 1;
                assert_eq!(
                    std::format!("{c:?}"),
                    before,
                    "a refusal changed the client"
                );
                let _ = drain(&mut c, now);
                let _ = events(&mut c);
                assert_ne!(
                    op(&mut c),
                    Err(Error::QueueFull),
                    "refused again after a drain"
                );
            }
            drained = xorshift(&mut rng).is_multiple_of(3);
            if drained {
                let _ = drain(&mut c, now);
                let _ = events(&mut c);
            }
        }
    }
    assert!(
        refused > 100 && after_drain > 5000,
        "{refused} refusals, {after_drain} ops after a drain"
    );
}

#[test]
fn the_default_queue_holds_a_whole_life() {
    // Connected and Closed are the only events of a client's life: with the default capacity
    // (4) nothing is ever refused even when the application never drains events
    let mut c = connecting();
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    feed(&mut c, ms(2), &hex("10 00 00 04 12 34 56 78"));
    assert_eq!(c.close(ms(3), ""), Err(Error::Closed));
    for t in 4..100 {
        assert!(c.handle_input(ms(t), (), &hex("10 00 00 04")).is_ok());
        c.handle_timeout(ms(t * 1000));
    }
    assert_eq!(
        events(&mut c),
        [
            ClientEvent::Connected { token: Some(TOK) },
            ClientEvent::Closed {
                cause: CloseCause::Peer
            }
        ]
    );
}

/// An unsolicited server-info update (token -1), as DDNet sends it to its players
fn info_update() -> Vec<u8> {
    use crate::game::connless::{ClientList, InfoKind, ServerInfo};
    use crate::game::packer::Str;
    let info = ServerInfo {
        kind: InfoKind::Vanilla,
        token: -1,
        version: Str::new("0.6.4"),
        name: Str::new("srv"),
        map: Str::new("dm1"),
        game_type: Str::new("DM"),
        flags: 0,
        num_players: 0,
        max_players: 8,
        num_clients: 0,
        max_clients: 8,
        clients: ClientList::EMPTY,
    };
    let mut buf = vec![0u8; info.buffer_len()];
    assert_eq!(info.emit(&mut buf), Ok(buf.len()));
    buf
}

#[test]
#[cfg(feature = "server-info")]
fn server_info_update_is_handed_out_while_online() {
    let mut c = online();
    let update = info_update();
    let app = feed_app(&mut c, ms(1), &update);
    assert!(matches!(app, Some(ClientApp::ServerInfo(i)) if i.token == -1));
    assert_eq!(c.stats().info_answers, 1);
}

#[test]
#[cfg(feature = "server-info")]
fn info_answers_are_taken_only_when_asked_for_or_as_an_update_while_online() {
    let answer = |token: i32| {
        let mut buf = info_update();
        // the token is the first string after the 14-byte header ("-1" in the update)
        assert_eq!(&buf[14..17], b"-1\0");
        let mut t = std::format!("{token}").into_bytes();
        t.push(0);
        buf.splice(14..17, t);
        buf
    };
    // an update (token -1) while connecting, or while offline: not ours
    let mut c = connecting();
    assert_eq!(feed_app(&mut c, ms(1), &info_update()), None);
    let mut offline: Client = Client::with_capacities(ClientConfig::default());
    assert_eq!(feed_app(&mut offline, ms(1), &info_update()), None);
    assert_eq!(offline.stats().dropped_connless, 1);
    // online, an answer with a token nobody asked for
    let mut c = online();
    assert_eq!(feed_app(&mut c, ms(1), &answer(7)), None);
    assert_eq!(c.stats().dropped_connless, 1);
    // asked for while offline, answered after the connection closed: dropped
    let mut c: Client = Client::with_capacities(ClientConfig::default());
    c.request_info(ms(0), 7, false).unwrap();
    let _ = drain(&mut c, ms(0));
    assert!(matches!(
        feed_app(&mut c, ms(1), &answer(7)),
        Some(ClientApp::ServerInfo(i)) if i.token == 7
    ));
    c.connect(ms(2)).unwrap();
    let _ = drain(&mut c, ms(2));
    feed(&mut c, ms(3), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    feed(&mut c, ms(4), &hex("10 00 00 04 12 34 56 78"));
    assert_eq!(c.state(), ClientState::Closed);
    assert_eq!(feed_app(&mut c, ms(5), &answer(7)), None);
    assert_eq!(c.stats().info_answers, 1);
    assert_eq!(c.stats().dropped_connless, 1);
}

#[test]
fn a_keep_alive_is_not_queued_behind_a_pending_accept() {
    let mut c = connecting();
    feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
    // the keep-alive interval since the CONNECT has passed, the ACCEPT is still waiting: it
    // goes out alone (it is the keep-alive)
    c.handle_timeout(ms(300));
    assert_eq!(drain(&mut c, ms(300)), [hex("10 00 00 03 12 34 56 78")]);
    assert_eq!(c.stats().keep_alives_sent, 0);
}

#[test]
fn a_queued_keep_alive_sets_no_deadline_of_its_own() {
    // handle_timeout queued the KEEP_ALIVE; until it is written the next deadline is another
    // timer's, not the passed keep-alive time (a driver that asks before draining must not spin)
    let mut c = online();
    c.handle_timeout(ms(300));
    let next = c.poll_timeout().unwrap();
    assert!(next > ms(300), "{next:?}");
    assert_eq!(drain(&mut c, ms(300)), [hex("10 00 00 00 12 34 56 78")]);
    assert_eq!(c.poll_timeout(), Some(ms(550)));
}

#[test]
#[cfg(not(feature = "server-info"))]
fn without_server_info_connless_datagrams_are_dropped() {
    let mut c = online();
    let update = info_update();
    assert_eq!(feed_app(&mut c, ms(1), &update), None);
    assert_eq!(c.stats().dropped_connless, 1);
    assert_eq!(c.stats().info_answers, 0);
}

#[test]
fn size_stays_within_the_recorded_figure() {
    // 408 B without `server-info`, 416 B with it; the same on 64-bit hosts and 32-bit targets
    // (no pointer-sized field). embedded/FOOTPRINT.md has the Cortex-M figures.
    let size = core::mem::size_of::<Client>();
    assert!(size <= 416, "game::Client is {size} B");
}
