#!/usr/bin/env python3
"""Allocations per request of the live proxy: `make bench-alloc`.

Remora runs as in `make bench` (one worker, in front of one upstream nginx), with
perf/alloc/malloc_count.c preloaded: it counts every call to malloc/calloc/realloc/memalign and
free in the process. The script warms the proxy up (pooled upstream connections opened, buffers
grown), reads the counters (SIGUSR2 makes the library write them to a file), sends a known number
of keep-alive requests, reads them again and prints the difference per request. That is the
steady-state cost of one request, startup and warm-up excluded; a number that is not 0 is the
allocations still left on the hot path.

Requests are sent one at a time on a few keep-alive connections, as a curl-like client would send
them (Host, User-Agent, Accept). Python 3.11 standard library only; reuses perf/bench.py's helpers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (perf/bench.py: servers, configs, readiness checks)

REPO = bench.REPO
DEFAULT_LIB = REPO / "build" / "perf" / "alloc" / "libremora_malloc_count.so"


def read_counts(pid: int, path: Path, deadline_s: float = 5.0) -> tuple[int, int]:
    """Signals the process and waits for the counters it writes."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        parts = text.split()
        if text.endswith("\n") and len(parts) == 2:
            return int(parts[0]), int(parts[1])
        time.sleep(0.01)
    raise bench.SetupError(f"no allocation counts in {path} within {deadline_s:.0f}s: is "
                           f"{DEFAULT_LIB.name} preloaded?")


def send_requests(port: int, path: str, total: int, conns: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(conns)]
    if path == "/post":  # bench.py's "post" scenario: a 256-byte JSON body, a 3-byte answer
        req = (f"POST /post HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: alloc-count\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(bench.POST_BODY)}\r\n"
               f"\r\n{bench.POST_BODY}").encode()
    else:
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: alloc-count\r\n"
               f"Accept: */*\r\n\r\n").encode()
    try:
        for i in range(total):
            s = socks[i % conns]
            s.sendall(req)
            status = bench.read_one_response(s)
            if status != 200:
                raise bench.SetupError(f"{path} -> {status}")
    finally:
        for s in socks:
            s.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="measured requests per case")
    ap.add_argument("--warmup", type=int, default=2000, help="requests before the first count")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive client connections")
    ap.add_argument("--targets", default="remora,remora-chain",
                    help="Remora flavours from perf/bench.py (REMORA_VARIANTS)")
    ap.add_argument("--remora", default=str(REPO / "build" / "remora"))
    ap.add_argument("--lib", default=str(DEFAULT_LIB))
    ap.add_argument("--output", default=str(bench.RESULTS_DIR / "alloc-latest.md"))
    args = ap.parse_args(argv)

    for f, what in ((args.remora, "make build"), (args.lib, "make build")):
        if not Path(f).exists():
            print(f"alloc_count: {f} is missing: run `{what}` first", file=sys.stderr)
            return 2

    servers: list[bench.Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="remora-alloc-"))
    os.chmod(tmp, 0o755)
    rows: list[tuple[str, str, float, float]] = []
    try:
        _, up_ports = bench.start_upstream(tmp, bench.Pinning(None, None, None), servers)

        for variant in args.targets.split(","):
            if variant not in bench.REMORA_VARIANTS:
                print(f"alloc_count: unknown target {variant!r}; known: "
                      f"{', '.join(bench.REMORA_VARIANTS)}", file=sys.stderr)
                return 2
            d = tmp / variant
            d.mkdir()
            port, admin = bench.free_ports(2)
            (d / "remora.yaml").write_text(bench.REMORA_VARIANTS[variant](port, admin, up_ports))
            counts = d / "counts"
            srv = bench.Server(variant, ["env", f"LD_PRELOAD={args.lib}",
                                         f"REMORA_MALLOC_COUNT_FILE={counts}", args.remora,
                                         "--config", str(d / "remora.yaml")], d / "remora.log")
            servers.append(srv)
            srv.start()
            bench.wait_ready(srv, bench.admin_ready(admin), f"{variant} /ready",
                             bench.READY_TIMEOUT_S)
            for size in list(bench.BODIES) + ["post"]:
                path = "/" + size
                send_requests(port, path, args.warmup, args.connections)
                a0, f0 = read_counts(srv.proc.pid, counts)
                send_requests(port, path, args.requests, args.connections)
                a1, f1 = read_counts(srv.proc.pid, counts)
                allocs = (a1 - a0) / args.requests
                frees = (f1 - f0) / args.requests
                rows.append((variant, bench.SIZE_LABELS[size], allocs, frees))
                print(f"{variant:<13} {bench.SIZE_LABELS[size]:<7} {allocs:6.2f} allocations/request "
                      f"({frees:.2f} frees)", flush=True)
            srv.stop()
    except bench.SetupError as e:
        print(f"alloc_count: {e}", file=sys.stderr)
        return 2
    finally:
        for s in reversed(servers):
            s.stop()

    rev = bench.tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    md = [f"# Allocations per request (live proxy, {time.strftime('%Y-%m-%d')}, git {rev})", "",
          f"`python3 perf/alloc_count.py` -- {args.requests} keep-alive requests per case (GETs, "
          f"and POSTs of a 256-byte body) on "
          f"{args.connections} connections after {args.warmup} warm-up requests; malloc, calloc, "
          f"realloc and memalign calls counted by perf/alloc/malloc_count.c (LD_PRELOAD).", "",
          "| target | response | allocations/request | frees/request |", "|---|---|---:|---:|"]
    md += [f"| {t} | {s} | {a:.2f} | {f:.2f} |" for t, s, a, f in rows]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(md) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
