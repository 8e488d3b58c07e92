#!/usr/bin/env python3
"""Turn criterion's output into the README benchmark table

Reads every benches/target/criterion/**/new/{benchmark,estimates}.json (written by `cargo bench`), and
prints Markdown: one row per benchmark with the median time per operation, operations per second
on one core (1e9 / median ns), bytes/s where the bench declares a throughput; then the ratios
between benchmarks of the same run and the README targets, each marked met or missed.

Usage:
  python3 benches/report.py [CRITERION_DIR]                 # print the Markdown
  python3 benches/report.py --update FILE [CRITERION_DIR]   # replace the generated block of FILE
  python3 benches/report.py --e2e [--update FILE] [E2E_JSON]
The generated block of FILE is everything between the lines `<!-- report:begin -->` and
`<!-- report:end -->`; the prose around it is kept. Only the standard library is used.

`--e2e` reads the end-to-end bench's JSON (`cargo bench --bench e2e` writes
benches/target/e2e.json) and prints its table; with `--update FILE` it replaces the block between
`<!-- e2e:begin -->` and `<!-- e2e:end -->`. The full report includes that table too when the
JSON exists beside the criterion directory.
"""

import datetime
import json
import os
import platform
import subprocess
import sys

# (label, numerator id, denominator id, target as (op, value) or None)
# A ratio is numerator median / denominator median.
RATIOS = [
    ("deframer (in place) / copy floor, mixed stream",
     "deframe_mixed/deframe_in_place", "deframe_mixed/copy_floor", None),
    ("deframer with socket-read copies / copy floor, mixed stream",
     "deframe_mixed/deframe_with_reads", "deframe_mixed/copy_floor", None),
    ("deframer (in place) / copy floor, small packets",
     "deframe_small/deframe_in_place", "deframe_small/copy_floor", None),
    ("deframer with socket-read copies / copy floor, small packets",
     "deframe_small/deframe_with_reads", "deframe_small/copy_floor", None),
    ("deframer (in place) / copy floor, large bodies",
     "deframe_large/deframe_in_place", "deframe_large/copy_floor", ("<=", 3.0)),
    ("deframer with socket-read copies / copy floor, large bodies",
     "deframe_large/deframe_with_reads", "deframe_large/copy_floor", ("<=", 3.0)),
    ("gunzip dynamic-Huffman 64 KiB / copy floor",
     "gzip_64KiB/gunzip_dynamic", "gzip_64KiB/copy_floor", None),
    ("gunzip stored 64 KiB / copy floor",
     "gzip_64KiB/gunzip_stored", "gzip_64KiB/copy_floor", None),
    ("CRC-32 of 64 KiB / copy floor (checked by every gunzip)",
     "gzip_64KiB/crc32", "gzip_64KiB/copy_floor", None),
    ("gunzip dynamic / flate2 (miniz_oxide) inflate of the same stream",
     "gzip_64KiB/gunzip_dynamic", "gzip_64KiB/flate2_inflate_dynamic", None),
    ("prost AuthResponse decode / borrowed decode (speed-up)",
     "control/prost_decode/auth_response", "control/borrowed_decode/auth_response", (">=", 5.0)),
    ("prost AuthResponse decode / from_utf8 of its session id alone (ceiling of any validating decoder)",
     "control/prost_decode/auth_response", "control/utf8_floor/auth_response", None),
    ("borrowed AuthResponse decode / from_utf8 of its session id alone",
     "control/borrowed_decode/auth_response", "control/utf8_floor/auth_response", None),
    ("prost Close decode / borrowed decode (speed-up)",
     "control/prost_decode/close", "control/borrowed_decode/close", None),
    ("prost Heartbeat decode / borrowed decode (speed-up)",
     "control/prost_decode/heartbeat", "control/borrowed_decode/heartbeat", None),
    ("prost AuthRequest (2 metadata pairs) decode / borrowed decode (speed-up)",
     "control/prost_decode/auth_request", "control/borrowed_decode/auth_request", None),
    ("prost ReconnectRequest (2 metadata pairs) decode / borrowed decode (speed-up)",
     "control/prost_decode/reconnect_request", "control/borrowed_decode/reconnect_request", None),
    ("prost Error decode / borrowed decode (speed-up)",
     "control/prost_decode/error", "control/borrowed_decode/error", None),
    ("borrowed AuthResponse encode / prost encode into a reused Vec",
     "control/borrowed_encode/auth_response", "control/prost_encode/auth_response", None),
    ("borrowed AuthRequest encode / prost encode into a reused Vec",
     "control/borrowed_encode/auth_request", "control/prost_encode/auth_request", None),
    ("borrowed AuthResponse decode / copy of the same bytes",
     "control/borrowed_decode/auth_response", "control/copy_floor/auth_response", None),
    ("borrowed Close decode / copy of the same bytes",
     "control/borrowed_decode/close", "control/copy_floor/close", None),
    ("game KEEP_ALIVE parse, Detect mode (the server's stateless path) / copy of the same 8 bytes",
     "game_control/parse_detect/keep_alive", "game_control/copy_floor/keep_alive", ("<=", 1.5)),
    ("game CONNECT (token form) parse, Detect mode / copy of the same 12 bytes",
     "game_control/parse_detect/connect", "game_control/copy_floor/connect", ("<=", 1.5)),
    ("game CLOSE \"bye\" + token parse, Detect mode / copy of the same 12 bytes",
     "game_control/parse_detect/close_bye", "game_control/copy_floor/close_bye", ("<=", 1.5)),
    ("game server KEEP_ALIVE, N = 1,024 / N = 8",
     "game_server_keep_alive/peers/1024", "game_server_keep_alive/peers/8", ("<=", 2.0)),
    ("game server KEEP_ALIVE, N = 65,536 / N = 8",
     "game_server_keep_alive/peers/65536", "game_server_keep_alive/peers/8", ("<=", 2.0)),
    ("game server KEEP_ALIVE, N = 8 / harness alone",
     "game_server_keep_alive/peers/8", "game_server_keep_alive/harness_only/8", None),
    ("Huffman decompress, 202 libtw2 payloads / copy floor",
     "huffman/decompress/libtw2_202", "huffman/copy_floor/libtw2_202", None),
    ("Huffman compress, 202 libtw2 payloads / copy floor",
     "huffman/compress/libtw2_202", "huffman/copy_floor/libtw2_202", None),
    ("1,393-byte compressed datagram opened and split / copy floor",
     "chunk_packet/open_and_split/1393B_57chunks", "chunk_packet/copy_floor/1393B_57chunks", None),
    ("one 2-byte vital chunk sent, delivered and acked / copy floor",
     "vital/send_deliver_ack/2B", "vital/copy_floor/2B", None),
]

# The short table for the README: (label, benchmark id)
HEADLINE = [
    ("game header parse (3 bytes)", "game_header/parse"),
    ("game KEEP_ALIVE parse, token connection", "game_control/parse_trailing/keep_alive"),
    ("game KEEP_ALIVE emit, token connection", "game_control/emit_token/keep_alive"),
    ("game chunk packet parse, 200 B, token connection", "game_chunk/parse_200B/trailing"),
    ("LongPort header parse (request)", "lp_header/parse/request"),
    ("LongPort packet parse, 64 B request", "lp_packet/parse_64B/request"),
    ("LongPort packet emit, 64 B request", "lp_packet/emit_64B/request"),
    ("game server: KEEP_ALIVE from 1 of 8 peers", "game_server_keep_alive/peers/8"),
    ("game server: KEEP_ALIVE from 1 of 1,024 peers", "game_server_keep_alive/peers/1024"),
    ("game server: KEEP_ALIVE from 1 of 65,536 peers (server full, 131,072 buckets)", "game_server_keep_alive/peers/65536"),
    ("LongPort heartbeat round trip (client → server → client, TCP)", "lp_heartbeat/round_trip/tcp"),
    ("LongPort heartbeat round trip (WebSocket ping → pong)", "lp_heartbeat/round_trip/websocket"),
    ("AuthResponse decode, borrowed", "control/borrowed_decode/auth_response"),
    ("AuthResponse decode, prost", "control/prost_decode/auth_response"),
    ("Close decode, borrowed", "control/borrowed_decode/close"),
    ("Close decode, prost", "control/prost_decode/close"),
    ("TCP deframer, 16 MiB of large bodies, with read copies", "deframe_large/deframe_with_reads"),
    ("copy floor of the same reads", "deframe_large/copy_floor"),
    ("TCP deframer, 16 MiB of small packets, in place", "deframe_small/deframe_in_place"),
    ("copy floor of the same reads", "deframe_small/copy_floor"),
    ("gunzip 64 KiB JSON (dynamic Huffman)", "gzip_64KiB/gunzip_dynamic"),
    ("flate2 / miniz_oxide inflate of the same stream", "gzip_64KiB/flate2_inflate_dynamic"),
]

# (label, benchmark id, op, value in ns)
TARGETS = [
    ("game KEEP_ALIVE through a 65,536-peer server", "game_server_keep_alive/peers/65536", "<=", 25.0),
    ("LongPort header parse (request)", "lp_header/parse/request", "<=", 5.0),
    ("LongPort header parse (response)", "lp_header/parse/response", "<=", 5.0),
    ("LongPort header parse (push)", "lp_header/parse/push", "<=", 5.0),
    ("LongPort TCP heartbeat round trip", "lp_heartbeat/round_trip/tcp", "<=", 300.0),
    ("LongPort WebSocket heartbeat round trip", "lp_heartbeat/round_trip/websocket", "<=", 300.0),
    ("one vital chunk sent, delivered and acked (2 B)", "vital/send_deliver_ack/2B", "<=", 50.0),
    ("1,393-byte compressed datagram opened and split into chunks",
     "chunk_packet/open_and_split/1393B_57chunks", "<=", 2000.0),
]


def load(root):
    """{id: dict(median ns, lo, hi, throughput bytes or None, mtime)}"""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                meta = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
        except (OSError, ValueError):
            continue
        med = est["median"]
        thr = meta.get("throughput") or {}
        out[meta["full_id"]] = {
            "median": med["point_estimate"],
            "lo": med["confidence_interval"]["lower_bound"],
            "hi": med["confidence_interval"]["upper_bound"],
            "bytes": thr.get("Bytes") or thr.get("BytesDecimal"),
            "elements": thr.get("Elements"),
            "mtime": os.path.getmtime(os.path.join(dirpath, "estimates.json")),
        }
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.2f} µs"
    return f"{ns:,.1f} ns" if ns < 100 else f"{ns:,.0f} ns"


def fmt_rate(per_s):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:,.2f} {unit}"
    return f"{per_s:,.0f}"


def fmt_bytes_rate(bps):
    gib = bps / (1 << 30)
    return f"{gib:,.2f} GiB/s" if gib >= 1 else f"{bps / (1 << 20):,.0f} MiB/s"


def machine_line():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "rustc ?"
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {rustc}"


def check(value, target):
    op, bound = target
    ok = value <= bound if op == "<=" else value >= bound
    return ("met" if ok else "**missed**"), f"{op} {bound:g}"


BEGIN = "<!-- report:begin -->"
END = "<!-- report:end -->"
E2E_BEGIN = "<!-- e2e:begin -->"
E2E_END = "<!-- e2e:end -->"

# the end-to-end floor: machine loop / bare loop, datagrams per second
E2E_TARGET = (">=", 0.85)


def main():
    args = sys.argv[1:]
    e2e = False
    if args[:1] == ["--e2e"]:
        e2e, args = True, args[1:]
    update = None
    if args[:1] == ["--update"]:
        if len(args) < 2:
            sys.exit("--update needs a file")
        update, args = args[1], args[2:]
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "target")
    if e2e:
        path = args[0] if args else os.path.join(here, "e2e.json")
        data = load_e2e(path)
        if data is None:
            sys.exit(f"no end-to-end results at {path}: run `cargo bench --bench e2e` first")
        produce = lambda: print_e2e(data)
        begin, end = E2E_BEGIN, E2E_END
    else:
        root = args[0] if args else os.path.join(here, "criterion")
        produce = lambda: report(root)
        begin, end = BEGIN, END
    if update is None:
        produce()
        return
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        produce()
    with open(update) as f:
        text = f.read()
    try:
        head, rest = text.split(begin, 1)
        _old, tail = rest.split(end, 1)
    except ValueError:
        sys.exit(f"{update} has no {begin} ... {end} block")
    with open(update, "w") as f:
        f.write(head + begin + "\n" + buf.getvalue() + end + tail)


def load_e2e(path):
    """The end-to-end bench's JSON, or None"""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def print_e2e(e):
    """The end-to-end table: both loops, their ratio and the target"""
    when = datetime.datetime.fromtimestamp(e["unix_time"], datetime.timezone.utc)
    ka = "off" if e.get("keep_alive_ms", 0) == 0 else f"every {e['keep_alive_ms']} ms"
    reps = e["reps"]
    print("<!-- generated by benches/report.py --e2e from benches/target/e2e.json -->")
    print(f"Measured {when:%Y-%m-%d %H:%M} UTC on {e.get('cpu', '?')}, {e.get('cores', '?')} cores, "
          f"Linux {e.get('kernel', '?')}; load average {e['load_start']} at the start, "
          f"{e['load_end']} at the end. {e['clients']:,} clients, `recvmmsg`/`sendmmsg` batch "
          f"{e['batch']}, {e['per_fill']:,} datagrams per drain, the machine's KEEP_ALIVE timer "
          f"{ka}, {len(reps)} repetitions of {e['seconds']:g} s.")
    print()
    print("| loop | datagrams/s while draining (median of repetitions) | slowest – fastest drain | "
          "CPU per datagram (server thread) | sent / received | datagrams per `recvmmsg` |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    peer = e.get("key", "SocketAddr")
    for key, label in (("machine", f"machine: `UdpDriver::run_batched` + `Server<{peer}, 65536>`"),
                       ("bare", "bare: the same `RecvBatch`/`SendBatch` calls, no machine")):
        rates = sorted(r[key]["rate"] for r in reps)
        lo = min(r[key]["min_rate"] for r in reps)
        hi = max(r[key]["max_rate"] for r in reps)
        cpu = sorted(r[key]["cpu_ns"] for r in reps)
        sent = sum(r[key]["sent_per_received"] for r in reps) / len(reps)
        batch = sum(r[key]["mean_batch"] for r in reps) / len(reps)
        print(f"| {label} | {fmt_rate(e[key + '_rate'])} | {fmt_rate(lo)} – {fmt_rate(hi)} | "
              f"{fmt_ns(e[key + '_cpu_ns'])} ({fmt_ns(cpu[0])} – {fmt_ns(cpu[-1])}) | {sent:.3f} | {batch:.1f} |")
    print()
    print("| ratio, same repetition | median | each repetition | target | |")
    print("| --- | ---: | ---: | ---: | --- |")
    verdict, bound = check(e["ratio"], E2E_TARGET)
    each = ", ".join(f"{r['ratio']:.2f}" for r in reps)
    print(f"| datagrams/s, machine / bare | {e['ratio']:.2f} | {each} | {bound} | {verdict} |")
    each = ", ".join(f"{r['cpu_ratio']:.2f}" for r in reps)
    print(f"| CPU per datagram, bare / machine | {e['cpu_ratio']:.2f} | {each} | | |")
    if "best_ratio" in e:
        each = ", ".join(f"{r['best_ratio']:.2f}" for r in reps)
        print(f"| fastest drain, machine / bare | {e['best_ratio']:.2f} | {each} | | |")


def report(root):
    data = load(root)
    if not data:
        sys.exit(f"no criterion results under {root}: run `cargo bench` first")
    newest = datetime.datetime.fromtimestamp(max(d["mtime"] for d in data.values()), datetime.timezone.utc)
    print("<!-- generated by benches/report.py from criterion's estimates.json files -->")
    print(f"Measured (newest result) {newest:%Y-%m-%d %H:%M} UTC on {machine_line()}.")
    print()
    print("| operation | median per op | ops/s (one core) | bytes/s |")
    print("| --- | ---: | ---: | ---: |")
    for label, key in HEADLINE:
        if key not in data:
            continue
        d = data[key]
        ns = d["median"]
        bps = fmt_bytes_rate(d["bytes"] * 1e9 / ns) if d["bytes"] else ""
        print(f"| {label} | {fmt_ns(ns)} | {fmt_rate(1e9 / ns)} | {bps} |")
    print()
    print_ratios_and_targets(data)
    e2e = load_e2e(os.path.join(root, os.pardir, "e2e.json"))
    if e2e is not None:
        print()
        print_e2e(e2e)
    print()
    print("<details><summary>All benchmarks</summary>")
    print()
    print("| benchmark | median per op | 95% CI of the median | ops/s (one core) | bytes/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key in sorted(data):
        d = data[key]
        ns = d["median"]
        rate = fmt_rate(1e9 / ns) if ns > 0 else "-"
        bps = fmt_bytes_rate(d["bytes"] * 1e9 / ns) if d["bytes"] and ns > 0 else ""
        ci = f"{fmt_ns(d['lo'])} – {fmt_ns(d['hi'])}"
        print(f"| `{key}` | {fmt_ns(ns)} | {ci} | {rate} | {bps} |")
    print()
    print("</details>")


def print_ratios_and_targets(data):
    print("| ratio (same run) | value | target | |")
    print("| --- | ---: | ---: | --- |")
    for label, num, den, target in RATIOS:
        if num not in data or den not in data:
            continue
        r = data[num]["median"] / data[den]["median"]
        stale = abs(data[num]["mtime"] - data[den]["mtime"]) > 3600
        note = " (measured in different runs)" if stale else ""
        if target:
            verdict, bound = check(r, target)
        else:
            verdict, bound = "", ""
        print(f"| {label}{note} | {r:.2f}x | {bound} | {verdict} |")

    print()
    print("| target | median | bound | |")
    print("| --- | ---: | ---: | --- |")
    for label, key, op, bound in TARGETS:
        if key not in data:
            print(f"| {label} | not measured | {op} {bound:g} ns | |")
            continue
        ns = data[key]["median"]
        verdict, b = check(ns, (op, bound))
        print(f"| {label} | {fmt_ns(ns)} | {b} ns | {verdict} |")


if __name__ == "__main__":
    main()
