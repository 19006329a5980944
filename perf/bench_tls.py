#!/usr/bin/env python3
"""TLS side by side: Remora and HAProxy terminating TLS with the same certificate, in front of the
same plain nginx upstream, under wrk. Two figures per target, medians of interleaved rounds:

  * TLS req/s: keep-alive HTTPS, 6 B responses (record layer + proxying);
  * handshakes/s: every request on a new connection (`connection: close`), so each one is a full
    TLS handshake (wrk does not resume sessions).

Both proxies run one thread/worker; certificate: ECDSA P-256 made with `openssl` for the run.
Reuses perf/bench.py's process, wrk and report helpers. Run: `make bench-tls` or
`python3 perf/bench_tls.py [--rounds N] [--duration S] [--quick]`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

RESULTS = B.REPO / "perf" / "results" / "tls-latest.md"
SCENARIOS = [("keep-alive", 64), ("handshake", 64)]


def make_cert(d: Path) -> tuple[Path, Path, Path]:
    key, cert, combined = d / "server.key", d / "server.pem", d / "combined.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=bench.local", "-addext", "subjectAltName=DNS:bench.local"],
                   check=True, capture_output=True)
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    return cert, key, combined


def remora_tls_conf(port: int, admin: int, up: int, cert: Path, key: Path) -> str:
    return f"""node_id: bench-remora-tls
workers: 1
log_level: warn
admin: {{ address: 127.0.0.1:{admin} }}
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    tls: {{ cert_file: {cert}, key_file: {key} }}
    routes:
      - match: {{ prefix: / }}
        cluster: upstream
clusters:
  - name: upstream
    endpoints:
      - {{ address: 127.0.0.1:{up} }}
"""


def haproxy_tls_conf(port: int, up: int, combined: Path) -> str:
    return f"""global
    nbthread 1
    maxconn 8192
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{port} ssl crt {combined} alpn http/1.1
    default_backend be
backend be
    server up1 127.0.0.1:{up}
"""


def run_wrk(pin: B.Pinning, conns: int, duration: int, url: str, close: bool) -> B.WrkResult:
    cmd = pin.prefix(pin.wrk) + ["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
                                 "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=duration + 60).stdout
    return B.parse_wrk(out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=8, help="seconds per round")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s (a smoke run)")
    p.add_argument("--build-dir", default=str(B.REPO / "build"))
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--proxy-cpu", type=B.proxy_cpu_cores, default=None, metavar="CORES",
                   help="cap each proxy at CORES of CPU time (CFS quota, a cgroup each, root; "
                        "0.1 to 1), as bench.py --proxy-cpu (default: no cap)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3
    remora_bin = Path(args.build_dir) / "remora"
    if not remora_bin.exists():
        print(f"bench_tls: {remora_bin} not found; run `make build` first", file=sys.stderr)
        return 2
    started = _dt.datetime.now().astimezone()
    load = B.loadavg()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    servers: list[B.Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="remora-bench-tls-"))
    os.chmod(tmp, 0o755)
    try:
        B.raise_nofile()
        pin = B.choose_pinning(False)
        cert, key, combined = make_cert(tmp)
        # bench.py's upstream (nginx serving /6b and /16k) and its proxy servers: pinned, and
        # under --proxy-cpu's quota when given.
        _, up_ports = B.start_upstream(tmp, pin, servers)
        up_port = up_ports[0]
        env = B.Env(tmp, pin, up_ports, remora_bin, args.proxy_cpu)

        port_r, admin_r, port_h = B.free_ports(3)
        (tmp / "remora.yaml").write_text(remora_tls_conf(port_r, admin_r, up_port, cert, key))
        remora = env.proxy_server("remora-tls", [str(remora_bin), "--config",
                                  str(tmp / "remora.yaml")], tmp / "remora.log")
        servers.append(remora)
        remora.start()
        B.wait_ready(remora, B.admin_ready(admin_r), "remora /ready", B.READY_TIMEOUT_S)
        (tmp / "haproxy.cfg").write_text(haproxy_tls_conf(port_h, up_port, combined))
        haproxy = env.proxy_server("haproxy-tls", ["haproxy", "-db", "-f",
                                   str(tmp / "haproxy.cfg")], tmp / "haproxy.log")
        servers.append(haproxy)
        haproxy.start()
        targets = {"remora-tls": port_r, "haproxy-tls": port_h}
        for name, port in targets.items():
            check = ["curl", "-sk", "--max-time", "2", f"https://127.0.0.1:{port}/6b"]
            srv = remora if name == "remora-tls" else haproxy
            B.wait_ready(srv, lambda c=check: subprocess.run(c, capture_output=True, text=True)
                         .stdout.startswith("hello"), f"{name} GET /6b over TLS", B.READY_TIMEOUT_S)

        results: dict[str, dict[str, list[B.WrkResult]]] = {s: {t: [] for t in targets}
                                                             for s, _ in SCENARIOS}
        for scenario, conns in SCENARIOS:
            close = scenario == "handshake"
            for rnd in ["warm-up"] + [f"round {i + 1}/{args.rounds}" for i in range(args.rounds)]:
                for name, port in targets.items():
                    r = run_wrk(pin, conns, 2 if rnd == "warm-up" else args.duration,
                                f"https://127.0.0.1:{port}/6b", close)
                    B.log(f"  {scenario:<10} {rnd:<11} {name:<12} {B.fmt_rps(r.rps):>10} req/s  "
                          f"p99 {B.fmt_ms(r.p99_ms)} ms" + (f"  {r.errors_text()}" if r.errors_text() else ""))
                    if rnd != "warm-up":
                        results[scenario][name].append(r)

        lines = [f"# TLS: Remora vs HAProxy ({started:%Y-%m-%d %H:%M %Z})", "",
                 f"Machine: {os.cpu_count()} CPUs ({B.cpu_model()}), load average at start {load}; "
                 f"{pin.describe()}. "
                 + ("No CPU quota. " if args.proxy_cpu is None else
                    f"Each proxy under a {args.proxy_cpu:g}-core CFS quota (--proxy-cpu). ")
                 + "One worker/thread each, ECDSA P-256 certificate, TLS 1.3, "
                 f"wrk -t2 -c64, {args.rounds} rounds of {args.duration} s, medians.", "",
                 "| scenario | Remora req/s | HAProxy req/s | Remora/HAProxy | Remora p99 ms | HAProxy p99 ms |",
                 "|---|---|---|---|---|---|"]
        for scenario, _ in SCENARIOS:
            rr = B.median([r.rps for r in results[scenario]["remora-tls"]])
            hr = B.median([r.rps for r in results[scenario]["haproxy-tls"]])
            rp = B.median([r.p99_ms for r in results[scenario]["remora-tls"]])
            hp = B.median([r.p99_ms for r in results[scenario]["haproxy-tls"]])
            label = "keep-alive TLS req/s" if scenario == "keep-alive" else "handshakes/s (new connection per request)"
            lines.append(f"| {label} | {B.fmt_rps(rr)} | {B.fmt_rps(hr)} | {B.fmt_ratio(B.ratio(rr, hr))} | "
                         f"{B.fmt_ms(rp)} | {B.fmt_ms(hp)} |")
        md = "\n".join(lines)
        B.log("\n" + md)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(md + "\n")
        return 0
    except B.SetupError as e:  # a server that did not start, or a cgroup that cannot be made
        B.log(f"bench_tls: error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        for s in reversed(servers):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
