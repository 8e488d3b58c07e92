#!/usr/bin/env python3
"""Write the seed corpora of the tether fuzz targets into corpus/<target>/.

The seeds are the spec test vectors (spec/game.md A.12, spec/longport.md section 8) as raw
decoder inputs, and short machine scenarios built from them in the op-stream format of the
machine targets (see src/lib.rs `OpReader` and the header of each target). Re-run after changing
an op format:  python3 fuzz/seeds.py   (rewrites corpus/ from scratch; commit the result)
"""
import gzip
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


class W:
    """The OpReader format: u8, u16 LE, blobs with a length byte (255 = u16 length follows)."""

    def __init__(self, *config):
        self.b = bytearray(config)

    def u8(self, *v):
        self.b += bytes(v)
        return self

    def u16(self, v):
        self.b += struct.pack("<H", v)
        return self

    def raw(self, b):
        self.b += b
        return self

    def blob(self, b):
        if isinstance(b, str):
            b = b.encode()
        if len(b) < 255:
            self.b.append(len(b))
        else:
            self.b.append(255)
            self.b += struct.pack("<H", len(b))
        self.b += b
        return self

    def bytes(self):
        return bytes(self.b)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


TOK = "12 34 56 78"

# --------------------------------------------------------------------------------------------
# game wire vectors (A.12)
GAME = {
    "keepalive_ack0": "10 00 00 00",
    "keepalive_ack0_tok": "10 00 00 00 " + TOK,
    "keepalive_ack1": "10 01 00 00",
    "keepalive_ack1_tok": "10 01 00 00 " + TOK,
    "keepalive_ack256": "11 00 00 00",
    "keepalive_ack513": "12 01 00 00",
    "keepalive_ack1023": "13 FF 00 00",
    "keepalive_ack1023_tok": "13 FF 00 00 " + TOK,
    "connect": "10 00 00 01",
    "connect_tok": "10 00 00 01 54 4B 45 4E FF FF FF FF",
    "connect_accept": "10 00 00 02",
    "connect_accept_tok": "10 00 00 02 54 4B 45 4E " + TOK,
    "accept": "10 00 00 03",
    "accept_tok": "10 00 00 03 " + TOK,
    "close": "10 00 00 04",
    "close_tok": "10 00 00 04 " + TOK,
    "close_bye": "10 00 00 04 62 79 65 00",
    "close_bye_tok": "10 00 00 04 62 79 65 00 " + TOK,
    "close_42_ack1": "10 01 00 04 34 32 00",
    "close_42_ack1_tok": "10 01 00 04 34 32 00 " + TOK,
    "live_shutdown": "10 00 00 04 53 65 72 76 65 72 20 73 68 75 74 64 6F 77 6E 00 28 6A 6E 4B",
    "live_kick": "10 00 00 04 4B 69 63 6B 65 64 20 28 63 69 20 74 65 73 74 20 6B 69 63 6B 29 00 28 6A 6E 4B",
    "live_wrong_version": "10 01 00 04 57 72 6F 6E 67 20 76 65 72 73 69 6F 6E 2E 20 53 65 72 76 65 72 20 69 73 20 72 75 6E 6E 69 6E 67 20 27 30 2E 36 20 36 32 36 66 63 65 39 61 37 37 38 64 66 34 64 34 27 20 61 6E 64 20 63 6C 69 65 6E 74 20 27 62 6F 67 75 73 2D 76 65 72 73 69 6F 6E 27 00 28 6A 6E 4B",
    "live_same_ip": "10 00 00 04 4F 6E 6C 79 20 34 20 70 6C 61 79 65 72 73 20 77 69 74 68 20 74 68 65 20 73 61 6D 65 20 49 50 20 61 72 65 20 61 6C 6C 6F 77 65 64 00 73 FA 9D 1E",
    "neg_short": "10 00",
    "neg_no_id": "10 00 00",
    "neg_0_6_5_token_flag": "18 00 00 00",
    "neg_0_7_marker": "14 00 00 00",
    "neg_compressed_control": "90 00 00 01",
    "neg_wrong_token": "10 00 00 04 78 00 01 02 03 04",
    "neg_bad_ack": "10 05 00 04 79 00 " + TOK,
    "neg_num_chunks": "10 00 01 00",
    "chunks": "00 00 01 41 42 43",
    "chunks_tok": "00 00 01 41 42 43 " + TOK,
    "chunks_compressed": "80 00 01 41 42 43",
}
for name, hexs in GAME.items():
    write("game_wire", name, h(hexs))
write("game_wire", "neg_1401_bytes", b"\x00\x00\x01" + bytes(1398))

# --------------------------------------------------------------------------------------------
# LongPort wire vectors (section 8)
V2 = h("08 80 d0 95 ff bc 31")
LP = {
    "v1_handshake": "11 09",
    "v3_heartbeat_request": "01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31",
    "v4_heartbeat_response": "02 01 00 00 00 01 00 00 00 07 08 80 d0 95 ff bc 31",
    "v5_go_heartbeat_request": "01 01 00 00 00 01 00 00 00 00 09 08 80 d0 95 ff bc 31 10 01",
    "v6_auth_rs": "01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63",
    "v6_auth_go": "01 02 00 00 00 01 00 00 00 00 05 0a 03 61 62 63",
    "v6_auth_pipelined": "11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63",
    "v7_auth_response": "02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31",
    "v7_auth_response_limits": "02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01",
    "v8_reconnect_request": "01 03 00 00 00 01 13 88 00 00 04 0a 02 73 31",
    "v8_reconnect_response": "02 03 00 00 00 01 00 00 00 0b 0a 02 73 32 10 80 c0 c8 d1 bd 31",
    "v9_close_push": "03 00 00 00 0d 08 04 12 09 62 61 64 20 74 6f 6b 65 6e",
    "v9_close_empty": "03 00 00 00 00",
    "v10_error_subscribe": "02 06 00 00 00 07 03 00 00 15 08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74",
    "v10_error_quota": "02 02 00 00 00 01 06 00 00 22 08 93 03 12 1d 63 6f 6e 6e 65 63 74 69 6f 6e 73 20 6c 69 6d 69 74 61 74 69 6f 6e 20 69 73 20 68 69 74",
    "v11_empty_push": "03 65 00 00 00",
    "v11_max_ids": "01 04 ff ff ff ff ea 60 00 00 00",
    "v11_signed_push": "13 65 00 00 01 01 01 02 03 04 05 06 07 08 aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa",
    "v12_gzip_response": "22 01 00 00 00 01 00 00 00 1e 1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00",
    "v13_request_header": "01 01 00 00 00 01 00 ff 00 00 07",
    "v13_response_header": "32 01 00 00 00 01 08 00 00 07",
    "v13_push_header": "e3 01 00 00 07",
    "v13_invalid_type": "ec 01 00 00 07",
}
for name, hexs in LP.items():
    write("longport_wire", name, h(hexs))

# deframer: flags (bit 0 server side, bits 1-2 body limit), number of cuts, cuts, stream
STREAMS = {
    "server_handshake_auth": (1, [3], LP["v6_auth_pipelined"]),
    "server_auth_heartbeat": (1, [1, 7, 20], "11 09 " + LP["v6_auth_rs"] + " " + LP["v3_heartbeat_request"]),
    "client_responses": (0, [5, 30], LP["v7_auth_response"] + " " + LP["v4_heartbeat_response"] + " " + LP["v9_close_push"]),
    "client_signed_gzip": (0, [2], LP["v11_signed_push"] + " " + LP["v12_gzip_response"]),
    "client_small_limit": (2 | 0, [4], LP["v10_error_subscribe"]),
    "server_bad_version": (1, [], "12 09 " + LP["v6_auth_rs"]),
    "client_unknown_type": (6, [1], LP["v11_empty_push"] + " ec 01 00 00 07"),
}
for name, (flags, cuts, hexs) in STREAMS.items():
    write("longport_deframe", name, bytes([flags, len(cuts)] + cuts) + h(hexs))
write("longport_deframe", "ws_query_rs", b"version=1&codec=1&platform=9")
write("longport_deframe", "ws_query_go", b"?codec=1&platform=9&version=1")

# control bodies
BODIES = {
    "v2_heartbeat": "08 80 d0 95 ff bc 31",
    "v5_heartbeat_id1": "08 80 d0 95 ff bc 31 10 01",
    "v5_heartbeat_id_minus1": "08 80 d0 95 ff bc 31 10 ff ff ff ff ff ff ff ff ff 01",
    "v6_auth": "0a 03 61 62 63",
    "v6_auth_metadata": "0a 03 61 62 63 12 15 0a 0f 61 63 63 65 70 74 2d 6c 61 6e 67 75 61 67 65 12 02 65 6e",
    "v7_grant": "0a 02 73 31 10 80 88 af a8 bd 31",
    "v7_grant_limits": "0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01",
    "v8_reconnect": "0a 02 73 31",
    "v8_grant": "0a 02 73 32 10 80 c0 c8 d1 bd 31",
    "v9_close": "08 04 12 09 62 61 64 20 74 6f 6b 65 6e",
    "v9_close_dup": "08 06 12 03 64 75 70",
    "v10_error": "08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74",
    "v10_error_quota": "08 93 03 12 1d 63 6f 6e 6e 65 63 74 69 6f 6e 73 20 6c 69 6d 69 74 61 74 69 6f 6e 20 69 73 20 68 69 74",
    "empty": "",
    "unknown_fields": "28 05 31 01 02 03 04 05 06 07 08 3d 01 02 03 04 0a 01 78",
    "group": "0b 0c",
}
for name, hexs in BODIES.items():
    write("longport_control", name, h(hexs))

# gzip
V12_GZ = h("1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00")
write("gzip", "v12_stored", V12_GZ)
text = b"LongPort heartbeat " * 20
write("gzip", "zlib_default", gzip.compress(text, mtime=0))
write("gzip", "zlib_level1", gzip.compress(V2 * 30, compresslevel=1, mtime=0))
write("gzip", "zlib_empty", gzip.compress(b"", mtime=0))
co = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_FIXED)
raw = co.compress(b"abcabcabcabc fixed huffman") + co.flush()
body = b"abcabcabcabc fixed huffman"
write("gzip", "fixed_huffman", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + raw + struct.pack("<II", zlib.crc32(body), len(body)))
# header with FEXTRA, FNAME, FCOMMENT and FHCRC
hdr = b"\x1f\x8b\x08\x1e\x00\x00\x00\x00\x00\x03" + b"\x02\x00ab" + b"name\x00" + b"comment\x00"
hdr += struct.pack("<H", zlib.crc32(hdr) & 0xFFFF)
write("gzip", "all_header_fields", hdr + V12_GZ[10:])

# --------------------------------------------------------------------------------------------
# game client: config [flags, connect_resend, connect_timeout, keep_alive, timeout, accept_retry]
GC = (0x00, 0x05, 0x0B, 0x04, 0x0B, 0x08)


def gc_raw(w, hexs):
    return w.u8(3).blob(h(hexs))


w = W(*GC).u8(6)  # connect
w.u8(4, 2, 0, 2).blob(b"")  # CONNECT_ACCEPT, ack 0, token FIXED
w.u8(0).u16(300)  # 300 ms: keep-alive
w.u8(4, 0, 0, 1).blob(b"")  # KEEP_ALIVE with the client's token
w.u8(5, 0, 1, 0, 1).blob(b"hello")  # chunks with the client's token
w.u8(10, 0, 1).blob(b"abc")  # send_chunks
w.u8(0x87).blob(b"bye")  # close (tiny buffer first)
write("game_client", "token_handshake", w.bytes())

w = W(0x01, 0x05, 0x0B, 0x04, 0x0B, 0x00).u8(6)
gc_raw(w, GAME["connect_accept"])
gc_raw(w, GAME["keepalive_ack0"])
w.u8(0).u16(600)
gc_raw(w, GAME["close_bye"])
write("game_client", "vanilla_vectors", w.bytes())

w = W(*GC).u8(6)
gc_raw(w, GAME["connect_accept_tok"])
gc_raw(w, GAME["keepalive_ack0_tok"])
gc_raw(w, GAME["close_42_ack1_tok"])
gc_raw(w, GAME["neg_wrong_token"])
gc_raw(w, GAME["chunks_tok"])
gc_raw(w, GAME["close_bye_tok"])
write("game_client", "token_vectors", w.bytes())

w = W(*GC).u8(6)
for k in ["neg_short", "neg_no_id", "neg_0_6_5_token_flag", "neg_0_7_marker", "neg_compressed_control", "neg_num_chunks"]:
    gc_raw(w, GAME[k])
gc_raw(w, "10 00 00 02 54 4B 45 4E 28 6A 6E 4B")
gc_raw(w, GAME["live_shutdown"])
write("game_client", "negative_and_live", w.bytes())

w = W(*GC).u8(6).u8(0).u16(700).u8(2, 11)  # resend, then connect timeout
write("game_client", "connect_timeout", w.bytes())

w = W(*GC).u8(6).u8(4, 2, 0, 2).blob(b"").u8(2, 3).u8(4, 2, 0, 2).blob(b"").u8(2, 11)
write("game_client", "accept_retry_then_timeout", w.bytes())

w = W(*GC).u8(8).u16(5).u8(9).u16(7).u8(6).u8(4, 2, 3).u16(0).u8(2).blob(b"").u8(11).u8(12).u16(100).blob(h(GAME["keepalive_ack0_tok"]))
write("game_client", "acks_and_stale_time", w.bytes())

# game client with the chunk layer (config flag bit 1; bit 2 = fast timers), and the op-14
# inputs: 0 compressed packet, 1 connless, 2 forged CONNECT_ACCEPT, 3 request_info, 4 chunks
INFO = "03 30 2e 36 20 36 32 36 66 63 65 39 61 37 37 38 64 66 34 64 34 00 00"
for flags, name in [(0x02, "chunk_layer_reference"), (0x06, "chunk_layer_fast")]:
    w = W(flags, *GC[1:]).u8(14, 3).u16(0x42).u8(0)  # server-info request first
    w.u8(14, 1, 0).blob(b"name")  # its answer
    w.u8(6)
    w.u8(14, 2, 0)  # a forged CONNECT_ACCEPT with FF FF FF FF: dropped
    gc_raw(w, GAME["connect_accept_tok"])
    w.u8(8, 1).blob(h(INFO))  # send_vital INFO, flushed
    # chunks from the server: a vital one in order, one early, a non-vital, compressed
    w.u8(14, 4, 1, 1, 3)
    w.u8(1).blob(b"\x05Tutorial\x00")
    w.u8(3).blob(b"early")
    w.u8(0).blob(bytes(40))
    w.u8(14, 0, 0, 1, 1).blob(b"")  # a compressed KEEP_ALIVE with the token
    w.u8(10).blob(bytes(30))  # send_non_vital
    w.u8(0).u16(1200)  # timers: resends, keep-alive
    write("game_client", name, w.bytes())

# game server: config [policy, keep_alive, timeout, connect_accept_resend, secret, max_peers]
GS = (0x00, 0x06, 0x0B, 0x05, 0x2A, 0x05)
w = W(*GS)
w.u8(3, 1).blob(h(GAME["connect_tok"]))  # token CONNECT from peer 1
w.u8(4, 1, 3, 0, 1).blob(b"")  # ACCEPT with the minted token
w.u8(0).u16(1100)  # keep-alive to peer 1
w.u8(4, 1, 0, 0, 2).blob(b"")  # KEEP_ALIVE with the peer's token
w.u8(5, 1, 0, 1, 0, 2).blob(b"hi")  # chunks
w.u8(10, 1, 0, 1).blob(b"hi")  # send_chunks
w.u8(6, 1).blob(b"Kicked (ci test kick)")
write("game_server", "token_admission_kick", w.bytes())

# game server with the chunk layer (config byte 0 bit 7; bit 6 = fast timers) and op 14:
# 0 compressed packet, 1 connless (a burst of info requests), 2 rejoin ACCEPT, 3 chunks
for first, name in [(0x81, "chunk_layer_reference"), (0xC0, "chunk_layer_fast")]:
    w = W(first, *GS[1:])
    w.u8(14, 1, 1, 0x30).u16(0x1234).u8(0)  # 4 info requests from peer 1 (extended)
    w.u8(3, 1).blob(h(GAME["connect_tok"]))
    w.u8(4, 1, 3, 0, 1).blob(b"")  # ACCEPT with the minted token
    # peer 1 sends INFO (vital 1), a chunk too early, a non-vital one, compressed
    w.u8(14, 1, 3, 1, 0, 3)
    w.u8(1).blob(h(INFO))
    w.u8(3).blob(b"early")
    w.u8(0).blob(bytes(40))
    w.u8(8, 1, 1).blob(b"\x05Tutorial\x00")  # send_vital MAP_CHANGE-like, flushed
    w.u8(10, 1).blob(bytes(60))  # send_non_vital (compressed)
    w.u8(14, 1, 0, 1, 0, 2).blob(b"")  # a compressed KEEP_ALIVE with the peer's token
    w.u8(14, 1, 2)  # rejoin
    w.u8(0).u16(1300)  # timers: resends, keep-alives
    write("game_server", name, w.bytes())

# the join (game::serve) with the chunk layer, op 15: [peer, f] (f % 6: 0 INFO (+ a version
# blob; (f >> 3) % 3: right, wrong, fuzzed), 1 REQUEST_MAP_DATA ((f >> 3) % 6: 0, next, last, -1,
# one past the end, any), 2 READY, 3 start info, 4 ENTERGAME, 5 PING_EX; 0x40 non-vital, 0x20 one
# ahead), then an ack selector
for first, name in [(0x81, "join_reference"), (0xC0, "join_fast")]:
    w = W(first, *GS[1:])
    for p in (1, 2):
        w.u8(3, p).blob(h(GAME["connect_tok"]))
        w.u8(4, p, 3, 0, 1).blob(b"")
    w.u8(15, 1, 4, 0)  # ENTERGAME before INFO
    w.u8(15, 1, 0).blob(b"").u8(0)  # INFO, right version
    w.u8(15, 1, 0).blob(b"").u8(0)  # INFO again
    w.u8(15, 1, 1, 0)  # REQUEST_MAP_DATA 0: the window
    w.u8(15, 1, 13, 0)  # the next in order
    w.u8(15, 1, 19, 0)  # the last piece
    w.u8(15, 1, 25, 0)  # -1
    w.u8(15, 1, 1, 0)  # 0 again
    w.u8(15, 1, 4, 0)  # ENTERGAME before READY
    w.u8(15, 1, 2, 0)  # READY
    w.u8(15, 1, 4, 0)  # ENTERGAME before the start info
    w.u8(15, 1, 3, 0)  # start info
    w.u8(15, 1, 0x44, 0)  # ENTERGAME, not vital
    w.u8(15, 1, 4, 0)  # ENTERGAME
    w.u8(15, 1, 5, 0)  # PING_EX
    w.u8(15, 2, 12).blob(b"").u8(0)  # peer 2: a wrong version
    w.u8(15, 2, 16).blob(b"\x01\x1b[31m" + b"x" * 150).u8(0)  # then a fuzzed one: ignored
    w.u8(0).u16(1300)  # timers
    write("game_server", name, w.bytes())

w = W(0x01, 0x06, 0x0B, 0x05, 0x2A, 0x05)
w.u8(3, 2).blob(h(GAME["connect"]))
w.u8(3, 2).blob(h("00 00 01 41 42 43"))
w.u8(3, 2).blob(h(GAME["close_bye"]))
write("game_server", "vanilla_admit", w.bytes())

w = W(0x02, 0x06, 0x0B, 0x05, 0x2A, 0x05)
w.u8(3, 3).blob(h(GAME["connect"]))
w.u8(0).u16(600)
w.u8(3, 3).blob(h("00 00 01 41 42 43"))
w.u8(7).blob(b"Server shutdown")
write("game_server", "vanilla_pending_shutdown", w.bytes())

w = W(0x00, 0x06, 0x0B, 0x05, 0x2A, 0x01)
for p in (0, 1):
    w.u8(3, p).blob(h(GAME["connect_tok"]))
    w.u8(4, p, 3, 0, 1).blob(b"")
write("game_server", "full_table", w.bytes())

w = W(*GS)
w.u8(3, 0).blob(h(GAME["connect"]))  # vanilla reject
w.u8(3, 4).blob(h(GAME["connect_tok"])).u8(4, 4, 3, 0, 1).blob(b"")
w.u8(2, 11)  # timeout
for k in ["neg_short", "neg_0_7_marker", "neg_wrong_token", "close_tok"]:
    w.u8(3, 4).blob(h(GAME[k]))
write("game_server", "reject_timeout_negative", w.bytes())

# --------------------------------------------------------------------------------------------
# LongPort client: 8 config bytes [flags, connect_timeout, auth_timeout, heartbeat_interval,
# heartbeat_timeout, request_timeout, reconnect base|max<<4, last]
LC_TCP = (0x02, 0x0B, 0x0B, 0x0D, 0x0E, 0x0D, 0xD6, 0x00)
LC_WS = (0x03, 0x0B, 0x0B, 0x0D, 0x0E, 0x0D, 0xD6, 0x00)


def lc_happy(cfg):
    w = W(*cfg)
    w.u8(13, 3).blob(b"abc").u8(1)  # connect, token "abc", accept-language
    w.u8(16)  # transport open: handshake + Auth
    w.u8(3).blob(h(LP["v7_auth_response"]))  # V7 (the first login id is 1)
    w.u8(18, 6).u16(5000).blob(b"")  # business request cmd 6
    w.u8(6, 2, 0, 6, 3, 0, 3).blob(b"invalid request").u16(0xB4A0)  # its error response
    w.u8(2, 31)  # heartbeat
    w.u8(5).u16(7)  # its echo (TCP) / nothing (WS)
    w.u8(7).raw(b"\x09\x00\x00\x00").u8(0).blob(V2)  # server heartbeat request
    w.u8(3).blob(h(LP["v11_empty_push"]))
    w.u8(3).blob(h(LP["v11_signed_push"]))
    w.u8(3).blob(h(LP["v12_gzip_response"]))
    w.u8(3).blob(h(LP["v9_close_push"]))  # Close AuthError: re-auth
    return w


write("longport_client", "tcp_vectors", lc_happy(LC_TCP).bytes())
w = lc_happy(LC_WS)
w.u8(10).blob(V2).u8(11, 0).u8(12, 6)
write("longport_client", "ws_vectors", w.bytes())

w = W(*LC_TCP).u8(13, 1, 0).u8(16)
w.u8(4, 0, 0, 0, 1, 2, 10, 1, 0)  # grant "s1", absolute expiry
w.u8(17).u8(2, 2).u8(16)  # transport lost, back-off, reopen: Reconnect
w.u8(3).blob(h("02 03 00 00 00 02 00 00 00 0b 0a 02 73 32 10 80 c0 c8 d1 bd 31"))  # V8 with id 2
w.u8(8, 6, 3).blob(b"dup").u8(0)  # Close ConnectDuplicate: stop
w.u8(15).u8(19)
write("longport_client", "reconnect_duplicate_close", w.bytes())

w = W(*LC_TCP).u8(13, 0, 0).u8(16)
w.u8(3).blob(h(LP["v10_error_quota"]))  # login rejected (status 6)
w.u8(2, 3).u8(14, 3).blob(b"fresh").u8(16)
w.u8(3).blob(h("02 02 00 00 00 02 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31"))
w.u8(3).blob(h("ec 01 00 00 07"))  # undecodable stream
write("longport_client", "rejected_then_protocol_error", w.bytes())

w = W(*LC_TCP).u8(13, 3).blob(b"abc").u8(0).u8(2, 11).u8(2, 2).u8(16).u8(2, 11)
write("longport_client", "dial_and_login_timeouts", w.bytes())

# gzip'd request bodies from 16 bytes (flag bit 7), QuotaPolicy::RetryAfter (last byte bit 4):
# a big server heartbeat handed over and echoed, a heartbeat on demand, then the Reconnect
# refused for the quota (status 6)
w = W(*((LC_TCP[0] | 0x80,) + LC_TCP[1:7] + (0x10,))).u8(13, 3).blob(b"abc").u8(0).u8(16)
w.u8(3).blob(h(LP["v7_auth_response"]))
w.u8(18, 6).u16(5000).blob(b"x" * 40)  # a 40-byte body: gzip'd
w.u8(7).raw(b"\x09\x00\x00\x00").u8(0).blob(b"\x07" * 200)  # too big for the echo slots
w.u8(27)  # send_heartbeat
w.u8(17).u8(2, 2).u8(16)  # transport lost, back-off, reopen: Reconnect
w.u8(28, 1)  # refused: status 6
w.u8(2, 11).u8(2, 11)
write("longport_client", "gzip_big_echo_quota_retry", w.bytes())

# LongPort server: 7 config bytes [auth_timeout, heartbeat_timeout, ws_ping_interval,
# max_unauthenticated, flags, default timeout, gateway limits]
LS = (0x0B, 0x0F, 0x0B, 0x05, 0x00, 0x00, 0x00)
w = W(*LS)
w.u8(13, 0, 0)  # TCP connection 0
w.u8(3, 0).blob(h(LP["v6_auth_pipelined"]))  # handshake + Auth "abc"
w.u8(15, 0, 2, 1, 2)  # accept_auth "s1"
w.u8(3, 0).blob(h(LP["v3_heartbeat_request"]))  # echoed by the machine
w.u8(3, 0).blob(h(LP["v11_max_ids"]))  # business request
w.u8(21, 0, 0, 4).u16(0xFFFF).blob(b"")  # respond
w.u8(21, 0, 1, 101).u16(0).blob(b"\x01")  # push
w.u8(19, 0, 4).blob(b"bad token")
write("longport_server", "tcp_auth_echo_close", w.bytes())

w = W(*LS)
w.u8(13, 0, 0).u8(3, 0).blob(h(LP["v6_auth_pipelined"])).u8(15, 0, 2, 1, 2)
w.u8(14, 0)  # transport lost; session survives
w.u8(13, 1, 1)  # WebSocket connection 1
w.u8(6, 1).u16(2).u8(0, 0)  # Reconnect with the granted session
w.u8(16, 1, 2, 2, 2)  # accept_reconnect "s2"
w.u8(10, 1).blob(V2).u8(11, 1).blob(V2)  # ping, pong
w.u8(2, 11)  # WS ping timer
w.u8(12, 1).u16(1000)
write("longport_server", "reconnect_ws", w.bytes())

w = W(*LS)
w.u8(13, 0, 0).u8(3, 0).blob(h(LP["v6_auth_pipelined"])).u8(17, 0, 4).u16(401).blob(b"bad token")
w.u8(13, 1, 1).u8(3, 1).blob(h(LP["v6_auth_go"])).u8(15, 1, 2, 3, 2)
w.u8(13, 2, 0).u8(3, 2).blob(h("11 09 " + LP["v3_heartbeat_request"]))  # heartbeat before auth
w.u8(13, 3, 0).u8(3, 3).blob(h("12 09"))  # bad handshake
w.u8(20)  # shutdown
write("longport_server", "reject_unauth_shutdown", w.bytes())

w = W(*LS)
w.u8(13, 4, 1).u8(3, 4).blob(h(LP["v8_reconnect_request"]))  # unknown session
w.u8(13, 5, 0).u8(2, 11)  # auth timeout
write("longport_server", "unknown_session_auth_timeout", w.bytes())

# the gateway's limits (the seventh config byte): quota 2 (bits 0-1), rate limits (bits 2-3),
# server heartbeats over TCP (bit 4); three logins of account 0 from one source: the third is
# over the quota; a burst of requests; the server's heartbeat answered, then a wrong id
w = W(*(LS[:6] + (0x1E,)))
for c in (0, 1, 2):
    w.u8(13, c, 2)  # TCP connection c from source 1
    w.u8(3, c).blob(h(LP["v6_auth_pipelined"]))
    w.u8(27, c, 0, 2, c, 2)  # accept_auth with account 0, session "s<c>"
w.u8(29, 0, 0, 5).u16(100)  # six cmd-6 requests in one read
w.u8(2, 11)  # heartbeat timer
w.u8(30, 0, 0).u8(30, 1, 1)
write("longport_server", "gateway_limits", w.bytes())

# one unauthenticated connection per source (bit 6), 64 bytes of body before auth (bit 7): a
# second connection from source 1 evicts the first; a header announcing 6,400 bytes closes
w = W(*(LS[:6] + (0xC0,)))
w.u8(13, 0, 2).u8(13, 1, 2).u8(13, 2, 4)
w.u8(3, 2).blob(h("11 09")).u8(31, 2).u16(100)
write("longport_server", "evict_and_pre_auth_limit", w.bytes())

# a gzip'd Reconnect with the session granted before
w = W(*LS)
w.u8(13, 0, 0).u8(3, 0).blob(h(LP["v6_auth_pipelined"])).u8(15, 0, 2, 1, 2)
w.u8(14, 0)  # transport lost
w.u8(13, 1, 1).u8(28, 1).u16(2).u8(0, 0)  # gzip'd Reconnect with the granted session
w.u8(16, 1, 2, 2, 2)
write("longport_server", "gzip_reconnect", w.bytes())

# hold: skip the drains of the next ops so queues fill up (refusal paths, capacity bounds)
w = W(*GC).u8(6).u8(13, 3).u8(4, 2, 0, 2).blob(b"").u8(0).u16(300).u8(7).blob(b"bye").u8(0).u16(10)
write("game_client", "hold_queues", w.bytes())
w = W(*GS).u8(13, 3)
for p in (0, 1, 2):
    w.u8(3, p).blob(h(GAME["connect_tok"]))
w.u8(13, 3)
for p in (0, 1, 2, 3):
    w.u8(4, p, 3, 0, 1).blob(b"")
w.u8(13, 3).u8(6, 0).blob(b"a").u8(6, 1).blob(b"b").u8(6, 2).blob(b"c").u8(6, 3).blob(b"d").u8(0).u16(1)
write("game_server", "hold_queues", w.bytes())
w = W(*LC_TCP).u8(13, 3).blob(b"abc").u8(0).u8(16).u8(3).blob(h(LP["v7_auth_response"]))
w.u8(26, 3)
for rid in range(5):
    w.u8(7).raw(bytes([rid + 9, 0, 0, 0])).u8(0).blob(V2)
w.u8(0).u16(1)
write("longport_client", "hold_echo_queue", w.bytes())
w = W(*LS).u8(13, 0, 0).u8(13, 1, 1).u8(26, 3)
w.u8(3, 0).blob(h(LP["v6_auth_pipelined"])).u8(3, 1).blob(h(LP["v6_auth_go"]))
w.u8(15, 0, 2, 1, 2).u8(14, 0).u8(16, 1, 2, 2, 2).u8(20)
write("longport_server", "hold_close_while_queued", w.bytes())

# --------------------------------------------------------------------------------------------
# game chunk layer (spec/game-chunks.md C.4, C.6.4, D.2-D.4: live DDNet 16.4 captures)
T40 = "40 72 f6 5a"
INFO_CHUNK = "41 07 01 03 " + b"0.6 626fce9a778df4d4".hex(" ") + " 00 00"
SERVER_ANSWER = (
    "41 02 01 01 12 81 0e 1f a1 db 33 78 b4 fb 16 4e d6 50 59 26 00 "
    "41 03 02 01 f6 21 a5 a1 f5 85 37 75 8e 73 41 be ee 79 f2 b2 05 3f "
    "44 04 03 01 f9 11 7b 3c 80 39 34 16 9f c0 ae f2 bc b7 5c 03 " + b"Tutorial\0".hex(" ") + " "
    "0d af bb a3 01 08 4a eb bf 43 95 75 e3 6a 44 bf b6 5a 4f 15 e6 06 e9 ee c3 81 4e 2e 0e 28 d9 53 "
    "f9 ed 9c ab 0e 97 95 84 01 00 "
    "41 03 04 05 " + b"Tutorial\0".hex(" ") + " f9 ed 9c ab 0e 97 95 84 01"
)
S2C_PLAIN = "00 04 13 8c 01 11 02 05 0f 8c 01 02 e9 f3 a4 dd 01 1b 00 01 00 09 00 02" + " 00" * 21
CHUNK_PACKETS = {
    "info": "00 00 01 " + INFO_CHUNK + " " + T40,
    "server_answer": "00 01 04 " + SERVER_ANSWER + " " + T40,
    "request_map_data": "00 04 01 40 02 02 27 00 " + T40,
    "input_compressed": "80 cd 01 98 91 49 64 81 d6 ff 95 e0 c4 31 8a 4b 71 03",
    "snap_compressed_extra_byte": "80 bd 02 3d 55 b4 d0 94 b0 bb a3 85 c2 35 49 9d 6d aa 47 68 31 b3 f8 ff ff b6 65 99 b6 1f 14 37 00",
    "ready": "00 bd 01 40 21 bb 1d " + T40,
    "motd_con_ready": "00 bb 02 40 22 be 02 00 40 21 bf 09 " + T40,
    "entergame": "00 c2 01 40 21 bd 1f " + T40,
    "resend_request": "40 07 00 a7 34 ec 04",
    "resent_pings": "00 ce 02 c0 21 bf 2d c0 31 c0 2d d4 78 93 97",
    "bomb": "80 00 01" + " ff" * 64,
    "truncated_data": "00 00 01 78 0a 05 01 02 03",
}
for name, hexs in CHUNK_PACKETS.items():
    write("game_chunks", name, h(hexs))
# the iterator view: a count byte, then chunk bytes
write("game_chunks", "iter_server_answer", bytes([4]) + h(SERVER_ANSWER))
write("game_chunks", "iter_s2c", bytes([2]) + h(S2C_PLAIN))
write("game_chunks", "iter_headers", bytes([5]) + h("78 0a 05") + bytes(906) + h("40 f1 ff 00 ff 4f 00") + bytes(1023) + h("c0 15 40 01 02 03 04 05 01 00") + bytes(16))

HUFFMAN = {
    "empty_packed": "8a 1b",
    "zero_packed": "15 37 00",
    "zero_packed_master": "15 37",
    "four_zeros_packed": "af b8 01",
    "mixed_packed": "b1 08 2a 6e 00",
    "ff8_packed": "92 92 92 92 92 92 92 92 8a 1b",
    "hello_packed": "ae 95 13 5c 09 57 c2 16 29 6e 00",
    "input_packed": "98 91 49 64 81 d6 ff 95 e0 c4 31 8a 4b 71 03",
    "s2c_packed": "3d 55 b4 d0 94 b0 bb a3 85 c2 35 49 9d 6d aa 47 68 31 b3 f8 ff ff b6 65 99 b6 1f 14 37 00",
    "s2c_plain": S2C_PLAIN + " a4 27 df 91",
    "info_plain": INFO_CHUNK + " 12 34 56 78",
    "counting": " ".join("%02x" % i for i in range(16)),
    "bomb_ones": " ff" * 200,
    "bomb_zeros": " 00" * 200,
}
for name, hexs in HUFFMAN.items():
    write("huffman", name, h(hexs))

def strs(*parts):
    return b"".join(p.encode() + b"\0" for p in parts)

FF10 = b"\xff" * 10
CONNLESS = {
    "gie3": FF10 + b"gie3\x56",
    "gie3_xe": h("78 65 12 34 00 00 ff ff ff ff") + b"gie3\x56",
    "fstd": FF10 + b"fstd\x56",
    "inf3": FF10 + b"inf3" + strs("86", "0.6.4, 16.4", "probe [0/64]", "Tutorial", "DDraceNetwork", "0", "0", "16", "0", "16"),
    "inf3_client": FF10 + b"inf3" + strs("86", "0.6.4, 16.4", "probe", "Tutorial", "DDraceNetwork", "0", "1", "16", "1", "16", "joinpy", "", "-1", "-9999", "1"),
    "iext": FF10 + b"iext" + strs("1193046", "0.6.4, 16.4", "probe", "Tutorial", "-1924373370", "1082711", "DDraceNetwork", "0", "0", "64", "0", "64", "") + strs("joinpy", "", "-1", "-9999", "1", ""),
    "iex_more": FF10 + b"iex+" + strs("1193046", "1", "") + strs("a", "b", "276", "10", "0", ""),
    "dtsf": FF10 + b"dtsf" + strs("86", "0.6.4, 16.4", "probe", "Tutorial", "DDraceNetwork", "0", "0", "64", "0", "64") + b"\x00",
    "unsolicited": FF10 + b"inf3" + strs("-1", "0.6.4, 16.4", "probe2 [1/64]", "Tutorial", "DDraceNetwork", "0", "1", "16", "1", "16"),
    "sixup": h("21 00 00 00 00 00 00 00 00"),
}
for name, data in CONNLESS.items():
    write("game_connless", name, data)

MSGS = {
    "info": "03 " + b"0.6 626fce9a778df4d4".hex(" ") + " 00 00",
    "rcon_type": "01 12 81 0e 1f a1 db 33 78 b4 fb 16 4e d6 50 59 26 00",
    "capabilities": "01 f6 21 a5 a1 f5 85 37 75 8e 73 41 be ee 79 f2 b2 05 3f",
    "map_change": "05 " + b"Tutorial\0".hex(" ") + " f9 ed 9c ab 0e 97 95 84 01",
    "map_data_last": "07 01 f9 ed 9c ab 0e b8 12 97 05" + " 00" * 343,
    "request_map_data": "27 00",
    "ready": "1d",
    "con_ready": "09",
    "entergame": "1f",
    "input": "21 90 01 92 01 28" + " 00" * 10,
    "input_timing": "13 8c 01 11",
    "snapsingle": "0f 8c 01 02 e9 f3 a4 dd 01 1b 00 01 00 09 00 02" + " 00" * 21,
    "start_info": "28 " + b"joinpy\0\0".hex(" ") + " 40 " + b"default\0".hex(" ") + " 00 00 00",
    "motd": "02 00",
    "int_max": "bf ff ff ff 0f",
    "int_min": "ff ff ff ff 0f",
    "overlong": "80 80 80 80 ff 33",
}
for name, hexs in MSGS.items():
    write("game_msg", name, h(hexs))
write("game_msg", "map_details", h("01 f9 11 7b 3c 80 39 34 16 9f c0 ae f2 bc b7 5c 03") + b"Tutorial\0" + h("0d af bb a3 01 08 4a eb bf 43 95 75 e3 6a 44 bf b6 5a 4f 15 e6 06 e9 ee c3 81 4e 2e 0e 28 d9 53 f9 ed 9c ab 0e 97 95 84 01 00"))

# vital channel op streams: preset byte, then ops (see fuzz_targets/game_vital.rs)
w = W(0)
w.u8(0, 1).blob(h(MSGS["info"]))          # queue INFO, flushed
w.u8(2)                                   # timers + fill everything due
w.u8(4, 0x00, 0x01)                       # ack 1
w.u8(5).u16(1).u8(1).blob(h(MSGS["rcon_type"]))
w.u8(5).u16(3).u8(1).blob(h(MSGS["map_change"]))   # gap
w.u8(5).u16(2).u8(1).blob(h(MSGS["capabilities"]))
w.u8(1).u16(1000).u8(2)
w.u8(4, 0x40, 0x00)                       # resend request, ack 0 (refused: below the last)
w.u8(0, 0).blob(b"chat").u8(1).u16(600).u8(2).u8(3, 10)
write("game_vital", "reference_join", w.bytes())
w = W(1)
for s in (3, 5, 4, 2):
    w.u8(5).u16(s).u8(1).blob(bytes([s]) * 100)
w.u8(5).u16(1).u8(3).blob(b"gap").u8(2)
for i in range(40):
    w.u8(0, i & 1).blob(bytes([i]) * 200)
w.u8(2).u8(4, 0x40, 0x05).u8(2).u8(1).u16(300).u8(2).u8(6)
write("game_vital", "fast_reorder_and_storm", w.bytes())

print("seeds:", sum(len(fs) for _, _, fs in os.walk(CORPUS)), "files")
