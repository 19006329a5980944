#!/usr/bin/env python3
"""Memory of the proxies: `make bench-memory`.

1. **Idle connections**: each proxy (Remora, HAProxy, nginx, as configured by perf/bench.py, one
   worker each) gets N keep-alive downstream connections (default 10,000), one `GET /6b` answered
   on each, then left open. Reported: VmRSS before and with them, and the difference per
   connection. (Socket buffers are kernel memory and not in VmRSS, for every proxy alike.)
2. **Soak** (Remora): wrk at full load (`--soak-connections`, `/6b` and `/16k` alternating every
   sample period) for `--soak-minutes`, VmRSS sampled every `--sample-seconds`. Reported: RSS after
   the first minute (pools, recyclers and caches warm), at the end, and the largest sample; growth
   after the first minute is what would be a leak.

Uses perf/bench.py's servers and configs; Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

REPO = bench.REPO


def idle_connections(env: bench.Env, servers: list[bench.Server], names: list[str], n: int) -> list[str]:
    rows = []
    for name in names:
        t = bench.start_target(name, env, servers)
        pid = t.server.serving_pid()
        before = bench.rss_kib(pid)
        try:
            rows.append(_measure_idle(t, pid, before, n))
        except (OSError, ValueError) as e:
            print(f"  {name:<8} could not hold {n} idle connections: {e}", flush=True)
            rows.append(f"| {name} | {bench.fmt_mib(before)} | failed: {e} | |")
        t.server.stop()
        servers.remove(t.server)
    return rows


def _measure_idle(t: bench.Target, pid: int, before: int, n: int) -> str:
    # In batches: every connection's GET is in flight at once within a batch, and Remora's default
    # cluster limits (1,024 connections + 1,024 pending, as Envoy's) would answer 503 to a single
    # batch of 10,000.
    socks = []
    try:
        while len(socks) < n:
            socks += bench.open_idle_conns(t.port, min(500, n - len(socks)))
        with_conns = bench.rss_kib(pid)
    finally:
        for s in socks:
            s.close()
    if with_conns is None:
        raise ValueError("the process exited")
    per = (with_conns - before) / n
    print(f"  {t.name:<8} idle {bench.fmt_mib(before)}, with {n} connections "
          f"{bench.fmt_mib(with_conns)}: {per:.2f} KiB per connection", flush=True)
    return f"| {t.name} | {bench.fmt_mib(before)} | {bench.fmt_mib(with_conns)} | {per:.2f} KiB |"


def soak(env: bench.Env, servers: list[bench.Server], minutes: float, sample_s: int,
         conns: int) -> tuple[list[tuple[float, int]], list[str]]:
    t = bench.start_target("remora", env, servers)
    pid = t.server.serving_pid()
    samples: list[tuple[float, int]] = []
    errors: list[str] = []
    start = time.monotonic()
    end = start + minutes * 60
    i = 0
    while time.monotonic() < end:
        path = "/6b" if i % 2 == 0 else "/16k"
        i += 1
        out = subprocess.run(env.pin.prefix(env.pin.wrk)
                             + ["wrk", "-t1", f"-c{conns}", f"-d{sample_s}s",
                                f"http://127.0.0.1:{t.port}{path}"],
                             capture_output=True, text=True, check=False).stdout
        r = bench.parse_wrk(out)
        if any(r.sock_errors.values()) or r.non2xx or r.rps == 0:
            errors.append(f"wrk {path} at {time.monotonic() - start:.0f}s: "
                          f"{r.errors_text() or 'no result'}")
        rss = bench.rss_kib(pid)
        if rss is None:
            errors.append("remora exited during the soak")
            break
        el = time.monotonic() - start
        samples.append((el, rss))
        print(f"  {el:6.0f}s  {path:<4} {r.rps:>9,.0f} req/s  RSS {bench.fmt_mib(rss)}", flush=True)
    t.server.stop()
    servers.remove(t.server)
    return samples, errors


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=10000, help="idle keep-alive connections")
    ap.add_argument("--targets", default="remora,haproxy,nginx")
    ap.add_argument("--soak-minutes", type=float, default=10.0, help="0 skips the soak")
    ap.add_argument("--sample-seconds", type=int, default=10)
    ap.add_argument("--soak-connections", type=int, default=256)
    ap.add_argument("--remora", default=str(REPO / "build" / "remora"))
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--output", default=str(bench.RESULTS_DIR / "memory-latest.md"))
    args = ap.parse_args(argv)

    bench.raise_nofile()
    servers: list[bench.Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="remora-memory-"))
    os.chmod(tmp, 0o755)
    md = [f"# Memory ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})", "",
          f"`{' '.join(['python3', 'perf/memory.py', *argv])}`", ""]
    errors: list[str] = []
    try:
        pin = bench.choose_pinning(args.no_pin)
        _, up_ports = bench.start_upstream(tmp, pin, servers)
        env = bench.Env(tmp=tmp, pin=pin, upstream_ports=up_ports, remora_bin=Path(args.remora))

        print(f"idle keep-alive connections: {args.connections}", flush=True)
        md += [f"## {args.connections:,} idle keep-alive connections", "",
               "| target | RSS idle | RSS with the connections | per connection |",
               "|---|---:|---:|---:|"]
        md += idle_connections(env, servers, args.targets.split(","), args.connections)

        if args.soak_minutes > 0:
            print(f"soak: {args.soak_minutes} min at {args.soak_connections} connections", flush=True)
            samples, errs = soak(env, servers, args.soak_minutes, args.sample_seconds,
                                 args.soak_connections)
            errors += errs
            warm = next((rss for el, rss in samples if el >= 60), samples[0][1] if samples else None)
            last = samples[-1][1] if samples else None
            peak = max((rss for _, rss in samples), default=None)
            md += ["", f"## Soak: {args.soak_minutes:g} min of wrk -c{args.soak_connections} "
                   f"(/6b and /16k alternating every {args.sample_seconds} s)", "",
                   "| RSS after 1 min | RSS at the end | peak | growth after 1 min |",
                   "|---:|---:|---:|---:|",
                   f"| {bench.fmt_mib(warm)} | {bench.fmt_mib(last)} | {bench.fmt_mib(peak)} | "
                   f"{(last - warm) if warm and last else 0:+d} KiB |",
                   "", "Samples (s, KiB): " + ", ".join(f"{el:.0f}:{rss}" for el, rss in samples)]
    except bench.SetupError as e:
        print(f"memory: {e}", file=sys.stderr)
        return 2
    finally:
        for s in reversed(servers):
            s.stop()
    if errors:
        md += ["", "ERRORS:"] + [f"- {e}" for e in errors]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
