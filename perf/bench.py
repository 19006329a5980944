#!/usr/bin/env python3
"""Remora vs HAProxy vs nginx under wrk (`make bench`).

One run, one machine, the same topology for every proxy:

    wrk --> [proxy, 1 worker] --keep-alive--> upstream nginx (1 worker, /6b and /16k)

Targets (`--targets`, comma separated, run in this order each round):
    direct        wrk straight to the upstream (the ceiling for this machine/pinning)
    remora        build/remora, workers: 1, one route prefix / -> cluster upstream
    haproxy       HAProxy, nbthread 1, http-reuse always
    nginx         nginx as a reverse proxy, worker_processes 1, upstream keepalive 128
    remora-chain  (off by default) Remora with the full filter chain: retry + circuit breaker +
                  bulkhead + weighted_round_robin over two upstream endpoints (the same nginx on
                  two ports)
    tcp-relay     (off by default) build/tcp-relay: bytes copied between each client
                  connection and one upstream connection of its own, no HTTP work at all. Under
                  --proxy-cpu its req/s is the floor of any proxy's CPU cost per request on this
                  machine (perf/README.md, "The floor")

--proxy-cpu CORES (what `make bench` passes, 0.5) runs every proxy worker under the same CFS quota,
a cgroup per proxy, so that the proxy and not the load generator is the bottleneck on a small
machine: req/s ratios are then ratios of CPU cost per request (perf/README.md, "CPU quota").

Scenarios: response size {6 B, 16 KiB} x downstream connections {64, 256}. For each scenario every
target gets a short warm-up, then rounds run interleaved (A B C D A B C D ...); the table shows
medians over the rounds. See perf/README.md.

Python 3.11 standard library only. Every server is started by this script as a non-daemon child
process in its own session, on 127.0.0.1 ports chosen by binding port 0, with config files in a temp
dir; all of them are stopped on exit, error, Ctrl-C or SIGTERM.

Exit status: 0 ok, 1 some run had socket errors / non-2xx responses / a server died, 2 setup error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "perf" / "results"

# + REMORA_VARIANTS keys, added below
ALL_TARGETS = ["direct", "remora", "haproxy", "nginx", "haproxy-chain", "tcp-relay"]
TCP_RELAY = REPO / "build" / "tcp-relay"
DEFAULT_TARGETS = ["direct", "remora", "haproxy", "nginx"]
PROXY_BASELINES = ["haproxy", "nginx", "haproxy-chain"]  # ratios are computed against these

BODIES = {"6b": b"hello\n", "16k": (b"0123456789abcdef" * 1024)}  # 6 B and 16384 B
assert len(BODIES["6b"]) == 6 and len(BODIES["16k"]) == 16384
# Scenarios: GETs of the two static bodies, and (opt-in, --sizes ...,post) a POST of a 256-byte
# JSON body answered with a 3-byte "ok\n", the shape of most service-to-service calls.
SIZE_LABELS = {"6b": "6 B", "16k": "16 KiB", "post": "POST 256 B"}
POST_BODY = '{"order":"' + "x" * 244 + '"}'
assert len(POST_BODY) == 256

IDLE_CONNS = 256  # idle keep-alive downstream connections for the RSS measurement
READY_TIMEOUT_S = 15.0


class Abort(Exception):
    """The run cannot go on (the upstream died): stop measuring, still print what was measured."""


class SetupError(Exception):
    """Cannot run the benchmark at all (missing binary, server failed to start...)."""


class Interrupted(Exception):
    """SIGTERM/SIGHUP received."""


# --------------------------------------------------------------------------------------------- util


def log(msg: str = "") -> None:
    print(msg, flush=True)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once so they differ, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_duration_s(text: str) -> int:
    """'5', '5s', '1m' -> whole seconds (wrk takes whole seconds)."""
    m = re.fullmatch(r"\s*(\d+)\s*(s|m)?\s*", str(text))
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (use e.g. 5, 5s, 1m)")
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def proxy_cpu_cores(text: str) -> float:
    """--proxy-cpu: cores per proxy worker, 0.1 (the kernel's least quota, 1 ms per 10 ms) to 1."""
    try:
        cores = float(text)
    except ValueError:
        cores = -1.0
    if not 0.1 <= cores <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: cores per proxy worker, from 0.1 to 1")
    return cores


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def children_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def busy_warning(load: str) -> str:
    """A warning when the machine was already busy before the bench started."""
    try:
        busy = float(load) > 0.5 * len(os.sched_getaffinity(0))
    except ValueError:
        return ""
    return " -- WARNING: the machine was busy, numbers are unreliable" if busy else ""


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0].strip() if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "not found"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.3f}"
    if v < 100:
        return f"{v:.2f}"
    return f"{v:.1f}"


def fmt_rps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def fmt_mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


# ---------------------------------------------------------------------------------- HTTP helpers


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "bench"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def read_one_response(sock: socket.socket) -> int:
    """Reads one HTTP/1.1 response with Content-Length (or chunked) off `sock`; returns status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
    return status


def open_idle_conns(port: int, n: int) -> list[socket.socket]:
    """n keep-alive connections, one GET /6b answered on each, left open."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        req = b"GET /6b HTTP/1.1\r\nHost: bench\r\n\r\n"
        for s in socks:
            s.sendall(req)
        for s in socks:
            status = read_one_response(s)
            if status != 200:
                raise ConnectionError(f"status {status}")
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


# ---------------------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    log_file: object = None
    cpu_limit: "CpuLimit | None" = None  # the server and its children run under this CPU quota

    def start(self) -> None:
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: terminal Ctrl-C is ours to handle
            cwd=str(self.log_path.parent),
            # In the child before exec, so nothing of the server ever runs outside its quota.
            preexec_fn=self.cpu_limit.enter if self.cpu_limit else None,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + line for line in lines[-n:])

    def pids(self) -> list[int]:
        """The process and its direct children (nginx: master + worker)."""
        if not self.alive():
            return []
        return [self.proc.pid] + children_of(self.proc.pid)

    def serving_pid(self) -> int | None:
        """The process that handles connections (nginx: the worker, otherwise the process)."""
        if not self.alive():
            return None
        kids = children_of(self.proc.pid)
        return kids[0] if kids else self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the child's pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Anything left in its group (e.g. an nginx worker) or the process itself: kill.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.cpu_limit is not None:
            self.cpu_limit.remove()
        if self.log_file:
            self.log_file.close()
            self.log_file = None


def wait_ready(server: Server, check: Callable[[], bool], what: str, deadline_s: float) -> None:
    """Polls `check` until it returns True, the server exits, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last_err = ""
    delay = 0.01
    while True:
        if not server.alive():
            raise SetupError(
                f"{server.name} exited (status {server.proc.returncode}) before {what}; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            if check():
                return
            last_err = "not ready yet"
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_err = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise SetupError(
                f"{server.name}: {what} not reached within {deadline_s:.0f}s ({last_err}); "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def serves_6b(port: int) -> Callable[[], bool]:
    def check() -> bool:
        status, body = http_get(port, "/6b")
        if status != 200:
            raise ValueError(f"GET /6b -> {status}")
        if body != BODIES["6b"]:
            raise ValueError(f"GET /6b body {body[:40]!r}")
        return True

    return check


def admin_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        status, _ = http_get(port, "/ready")
        return status == 200

    return check


# ------------------------------------------------------------------------------------- configs

NGINX_TEMP_PATHS = """
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
"""


def nginx_upstream_conf(d: Path, www: Path, ports: list[int]) -> str:
    listens = "\n".join(f"        listen 127.0.0.1:{p} backlog=4096;" for p in ports)
    return f"""# upstream for the benchmark: static 6 B and 16 KiB bodies
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    etag off;
    default_type text/plain;
{NGINX_TEMP_PATHS.format(d=d)}
    server {{
{listens}
        root {www};
        location = /6b {{ }}
        location = /16k {{ }}
        location = /post {{ return 200 "ok\\n"; }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_proxy_conf(d: Path, port: int, upstream_port: int) -> str:
    return f"""# nginx as a reverse proxy: 1 worker, keep-alive to the upstream
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 40000;
events {{ worker_connections 24000; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
{NGINX_TEMP_PATHS.format(d=d)}
    upstream up {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def haproxy_conf(port: int, upstream_port: int) -> str:
    return f"""# HAProxy as a reverse proxy: 1 thread, keep-alive + reuse to the upstream, no logs
global
    nbthread 1
    maxconn 9990

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
    timeout http-request 10s

frontend fe
    bind 127.0.0.1:{port} backlog 4096
    default_backend be

backend be
    server up1 127.0.0.1:{upstream_port}
"""


def haproxy_chain_conf(port: int, upstream_ports: list[int]) -> str:
    """HAProxy with what Remora's chain does: retries with redispatch, active health checks,
    weighted round robin over the two upstream ports (1:3), a server maxconn as the bulkhead."""
    return f"""# HAProxy, resilience on: retries + redispatch, health checks, weights 1:3, maxconn per server
global
    nbthread 1
    maxconn 9990

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 60s
    timeout server 2s
    timeout http-keep-alive 300s
    timeout http-request 10s
    retries 2
    option redispatch
    retry-on conn-failure empty-response response-timeout 502 503 504

frontend fe
    bind 127.0.0.1:{port} backlog 4096
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /6b
    server up1 127.0.0.1:{upstream_ports[0]} weight 1 check inter 1s fall 3 rise 2 maxconn 1024
    server up2 127.0.0.1:{upstream_ports[1]} weight 3 check inter 1s fall 3 rise 2 maxconn 1024
"""


def remora_conf(listen_port: int, admin_port: int, upstream_ports: list[int]) -> str:
    """Plain Remora: one route prefix / -> cluster upstream (contract section 2)."""
    return f"""# Remora: 1 worker, one route -> one endpoint (pooled keep-alive by default)
node_id: bench-remora
workers: 1
log_level: warn
drain_timeout: 2s
admin: {{ address: 127.0.0.1:{admin_port} }}
listeners:
  - name: bench
    address: 127.0.0.1:{listen_port}
    routes:
      - match: {{ prefix: / }}
        cluster: upstream
clusters:
  - name: upstream
    endpoints:
      - {{ address: 127.0.0.1:{upstream_ports[0]} }}
"""


def remora_chain_conf(listen_port: int, admin_port: int, upstream_ports: list[int]) -> str:
    """Remora with the full filter chain: retry + circuit breaker + bulkhead + weighted LB.

    Limits are sized so that a healthy upstream at 256 connections never trips them: the point is
    to measure the cost of the filters on the happy path, not their rejections.
    """
    eps = "\n".join(
        f"      - {{ address: 127.0.0.1:{p}, weight: {w} }}"
        for p, w in zip(upstream_ports, [1, 3])
    )
    return f"""# Remora, full filter chain: retry + circuit_breaker + bulkhead + weighted_round_robin
node_id: bench-remora-chain
workers: 1
log_level: warn
drain_timeout: 2s
admin: {{ address: 127.0.0.1:{admin_port} }}
listeners:
  - name: bench
    address: 127.0.0.1:{listen_port}
    routes:
      - name: chain
        match: {{ prefix: / }}
        cluster: upstream
        timeout: 10s
        retry:
          attempts: 3
          on: [connect-failure, reset, gateway-error]
          per_try_timeout: 2s
          backoff: {{ base: 25ms, max: 250ms }}
          budget: {{ ratio: 0.2, min_retries_per_second: 10 }}
clusters:
  - name: upstream
    lb_policy: weighted_round_robin
    connect_timeout: 1s
    endpoints:
{eps}
    limits:
      max_connections: 4096
      max_pending_requests: 4096
      max_requests: 4096
      max_retries: 3
    bulkhead:
      max_concurrent_requests: 1024
      max_queue: 1024
      queue_timeout: 1s
    circuit_breaker:
      consecutive_failures: 5
      failure_rate: {{ threshold_percent: 50, window: 10s, min_requests: 20 }}
      open_duration: 30s
      half_open_max_requests: 1
      success_threshold: 2
      max_ejection_percent: 50
"""


# Scenario hook: every Remora flavour is a target named here, mapped to the function that writes
# its YAML from (listen_port, admin_port, upstream_ports) -- upstream_ports are the same nginx on
# two ports. To add a flavour: write a *_conf function like remora_chain_conf and add it here; it is
# then selectable with --targets (only "remora" is in the default set).
def remora_2w_conf(listen_port: int, admin_port: int, upstream_ports: list[int]) -> str:
    """Plain Remora with 2 workers (worker scaling; run it with --no-pin)."""
    return remora_conf(listen_port, admin_port, upstream_ports).replace(
        "workers: 1", "workers: 2").replace("node_id: bench-remora", "node_id: bench-remora-2w")


class CpuLimit:
    """A CPU quota for one server's process tree: a cgroup of its own whose CFS bandwidth allows
    `cores` cores of CPU time per PERIOD_US (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`).

    On a machine too small to give the load generator and the upstream more CPU than the proxy
    needs, the proxy is otherwise never the bottleneck, and req/s measures the load generator.
    Under the same quota for every proxy, the proxy is the bottleneck and req/s ratios are
    ratios of CPU cost per request, under the same kind of limit a Kubernetes sidecar gets
    (`resources.limits.cpu`). The short period keeps the stall of a throttled proxy (at most
    PERIOD_US x (1 - cores)) small next to the latencies measured.
    """

    PERIOD_US = 10_000

    def __init__(self, name: str, cores: float):
        quota = int(cores * self.PERIOD_US)  # >= 1,000 us, the kernel's least (--proxy-cpu >= 0.1)
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        root = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/cpu")
        self.path = root / f"remora-bench-{os.getpid()}-{name}"
        try:
            if v2:
                ctl = root / "cgroup.subtree_control"
                if "cpu" not in ctl.read_text().split():
                    ctl.write_text("+cpu")
            self.path.mkdir(exist_ok=True)
            if v2:
                (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as e:
            self.remove()
            raise SetupError(f"--proxy-cpu needs a writable cgroup CPU controller ({root}): {e}; "
                             f"run as root, or without the quota (leave out --proxy-cpu; "
                             f"`make bench BENCH_PROXY_CPU=`)") from e

    def enter(self) -> None:
        """Moves the calling process into the cgroup (run in the child, before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttled(self) -> tuple[int, int]:
        """(CFS periods so far, periods in which the quota ran out)."""
        stat = {}
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                k, _, v = line.partition(" ")
                stat[k] = int(v)
        except (OSError, ValueError):
            pass
        return stat.get("nr_periods", 0), stat.get("nr_throttled", 0)

    def remove(self) -> None:
        # The processes were killed and reaped; the kernel empties the group shortly after.
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    log(f"bench: warning: could not remove cgroup {self.path}")
                    return
                time.sleep(0.05)


REMORA_VARIANTS: dict[str, Callable[[int, int, list[int]], str]] = {
    "remora": remora_conf,
    "remora-chain": remora_chain_conf,
    "remora-2w": remora_2w_conf,
}
ALL_TARGETS += [n for n in REMORA_VARIANTS if n not in ALL_TARGETS]
PROXY_WORKERS = {"remora-2w": 2}  # worker threads of targets that have more than one

# ------------------------------------------------------------------------------------- targets


@dataclass
class Pinning:
    proxy: str | None  # taskset -c list, or None = unpinned
    upstream: str | None
    wrk: str | None

    def prefix(self, cpus: str | None) -> list[str]:
        return ["taskset", "-c", cpus] if cpus is not None else []

    def describe(self) -> str:
        if self.proxy is None:
            return "no CPU pinning"
        return (f"CPU pinning (taskset): proxy on CPU {self.proxy}, upstream nginx on CPU "
                f"{self.upstream}, wrk on CPU {self.wrk}")


@dataclass
class Env:
    tmp: Path
    pin: Pinning
    upstream_ports: list[int]
    remora_bin: Path
    proxy_cpu: float | None = None  # --proxy-cpu: cores per proxy worker, None = no quota

    def proxy_server(self, name: str, cmd: list[str], log_path: Path) -> Server:
        """A proxy target's server, pinned and, with --proxy-cpu, under its CPU quota."""
        limit = None
        if self.proxy_cpu is not None:
            limit = CpuLimit(name, self.proxy_cpu * PROXY_WORKERS.get(name, 1))
        return Server(name, self.pin.prefix(self.pin.proxy) + cmd, log_path, cpu_limit=limit)


@dataclass
class Target:
    name: str
    port: int = 0
    server: Server | None = None  # None for "direct"
    rss_idle_kib: int | None = None
    rss_conns_kib: int | None = None
    rss_note: str = ""
    failed: str = ""  # set when the server died mid-run; later runs are skipped


def start_upstream(tmp: Path, pin: Pinning, servers: list[Server]) -> tuple[Server, list[int]]:
    """The upstream of every benchmark: one nginx serving /6b and /16k on two ports (the second is
    remora-chain's second endpoint). Registered in `servers` at once; returns it ready."""
    up_ports = free_ports(2)
    www = tmp / "www"
    www.mkdir()
    for name, body in BODIES.items():
        (www / name).write_bytes(body)
        os.chmod(www / name, 0o644)
    os.chmod(www, 0o755)
    up_dir = tmp / "upstream"
    up_dir.mkdir()
    (up_dir / "nginx.conf").write_text(nginx_upstream_conf(up_dir, www, up_ports))
    upstream = Server("upstream", pin.prefix(pin.upstream)
                      + ["nginx", "-p", f"{up_dir}/", "-e", "stderr", "-c", str(up_dir / "nginx.conf")],
                      up_dir / "nginx.log")
    servers.append(upstream)
    upstream.start()
    for p in up_ports:
        wait_ready(upstream, serves_6b(p), f"GET http://127.0.0.1:{p}/6b == 200", READY_TIMEOUT_S)
    return upstream, up_ports


def start_target(name: str, env: Env, servers: list[Server]) -> Target:
    """Starts `name` (registered in `servers` at once, so it is stopped even if it never gets ready)."""
    d = env.tmp / name
    d.mkdir(parents=True, exist_ok=True)
    if name == "direct":
        return Target(name, port=env.upstream_ports[0])
    if name in REMORA_VARIANTS:
        port, admin = free_ports(2)
        cfg = d / "remora.yaml"
        cfg.write_text(REMORA_VARIANTS[name](port, admin, env.upstream_ports))
        srv = env.proxy_server(name, [str(env.remora_bin), "--config", str(cfg)], d / "remora.log")
        servers.append(srv)
        srv.start()
        t = Target(name, port=port, server=srv)
        wait_ready(srv, admin_ready(admin), f"GET http://127.0.0.1:{admin}/ready == 200",
                   READY_TIMEOUT_S)
    elif name in ("haproxy", "haproxy-chain"):
        (port,) = free_ports(1)
        cfg = d / "haproxy.cfg"
        cfg.write_text(haproxy_conf(port, env.upstream_ports[0]) if name == "haproxy"
                       else haproxy_chain_conf(port, env.upstream_ports))
        srv = env.proxy_server(name, ["haproxy", "-db", "-f", str(cfg)], d / "haproxy.log")
        servers.append(srv)
        srv.start()
        t = Target(name, port=port, server=srv)
    elif name == "nginx":
        (port,) = free_ports(1)
        cfg = d / "nginx.conf"
        cfg.write_text(nginx_proxy_conf(d, port, env.upstream_ports[0]))
        srv = env.proxy_server(name, ["nginx", "-p", f"{d}/", "-e", "stderr", "-c", str(cfg)],
                               d / "nginx.log")
        servers.append(srv)
        srv.start()
        t = Target(name, port=port, server=srv)
    elif name == "tcp-relay":
        if not TCP_RELAY.exists():
            raise SetupError(f"{TCP_RELAY} is missing: build it with `make build` (it is built "
                             f"with the tests), or leave tcp-relay out of --targets")
        (port,) = free_ports(1)
        srv = env.proxy_server(name, [str(TCP_RELAY), str(port), str(env.upstream_ports[0])],
                               d / "tcp-relay.log")
        servers.append(srv)
        srv.start()
        t = Target(name, port=port, server=srv)
    else:
        raise SetupError(f"unknown target {name!r}")
    wait_ready(srv, serves_6b(port), f"GET http://127.0.0.1:{port}/6b == 200 'hello'",
               READY_TIMEOUT_S)
    return t


def measure_rss(t: Target) -> str:
    """VmRSS idle after start and with IDLE_CONNS idle keep-alive connections open.

    Returns an error text ("" when fine): failing to hold the connections is a proxy failure.
    """
    if t.server is None:
        return ""
    pid = t.server.serving_pid()
    if pid is None:
        return f"{t.name}: exited before the RSS measurement"
    if pid != t.server.proc.pid:
        t.rss_note = f"worker pid; master adds {fmt_mib(rss_kib(t.server.proc.pid))}"
    t.rss_idle_kib = rss_kib(pid)
    socks: list[socket.socket] = []
    try:
        socks = open_idle_conns(t.port, IDLE_CONNS)
        t.rss_conns_kib = rss_kib(pid)
    except (OSError, ValueError, IndexError) as e:
        t.rss_note = (t.rss_note + "; " if t.rss_note else "") + f"idle conns failed: {e}"
        return f"{t.name}: {IDLE_CONNS} idle keep-alive connections (one GET /6b each) failed: {e}"
    finally:
        for s in socks:
            s.close()
    return ""


# ----------------------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


@dataclass
class WrkResult:
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    sock_errors: dict[str, int] = field(default_factory=dict)
    non2xx: int = 0
    problem: str = ""  # parse failure / non-zero exit
    proxy_cpu: float | None = None  # CPU use of the proxy during the run, % of one core
    upstream_cpu: float | None = None  # same for the upstream nginx
    throttled: float | None = None  # --proxy-cpu: % of CFS periods in which the proxy's quota ran out

    def errors_text(self) -> str:
        parts = [f"{k} {v}" for k, v in self.sock_errors.items() if v]
        if self.non2xx:
            parts.append(f"non-2xx/3xx {self.non2xx}")
        if self.problem:
            parts.append(self.problem)
        return ", ".join(parts)


def parse_wrk(out: str) -> WrkResult:
    r = WrkResult()
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        r.problem = "no Requests/sec in wrk output"
        return r
    r.rps = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    if m:
        r.requests = int(m.group(1))
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M):
        ms = float(val) * _UNIT_MS[unit]
        if pct == "50":
            r.p50_ms = ms
        elif pct == "99":
            r.p99_ms = ms
    if r.p50_ms is None or r.p99_ms is None:
        r.problem = "no latency distribution in wrk output"
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r.sock_errors = dict(zip(["connect", "read", "write", "timeout"],
                             map(int, m.groups()) if m else [0, 0, 0, 0]))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r.non2xx = int(m.group(1)) if m else 0
    return r


_running_wrk: subprocess.Popen | None = None


def wrk_post_script() -> Path:
    """The wrk Lua script of the "post" scenario (written once per run)."""
    path = Path(tempfile.gettempdir()) / f"remora-bench-post-{os.getpid()}.lua"
    if not path.exists():
        path.write_text('wrk.method = "POST"\n'
                        f"wrk.body = '{POST_BODY}'\n"
                        'wrk.headers["Content-Type"] = "application/json"\n')
    return path


def run_wrk(pin: Pinning, threads: int, conns: int, duration_s: int, url: str,
            post: bool = False) -> tuple[WrkResult, str]:
    global _running_wrk
    cmd = pin.prefix(pin.wrk) + ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration_s}s",
                                 "--timeout", "5s", "--latency"]
    if post:
        cmd += ["-s", str(wrk_post_script())]
    cmd.append(url)
    _running_wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = _running_wrk.communicate(timeout=duration_s + 60)
    except subprocess.TimeoutExpired:
        _running_wrk.kill()
        out, _ = _running_wrk.communicate()
        r = parse_wrk(out)
        r.problem = "wrk hung (killed)"
        return r, out
    finally:
        rc = _running_wrk.returncode
        _running_wrk = None
    r = parse_wrk(out)
    if rc != 0 and not r.problem:
        r.problem = f"wrk exit status {rc}"
    return r, out


def run_scenarios(args, pin: Pinning, upstream: Server, targets: list[Target],
                  results: dict, errors: list[str]) -> None:
    """Every scenario: a warm-up per target, then rounds interleaved A B C D A B C D ..."""
    total = len(args.sizes) * len(args.conns)
    idx = 0
    for size in args.sizes:
        for conns in args.conns:
            idx += 1
            key = (size, conns)
            results[key] = {t.name: [] for t in targets}
            label = f"{size} c={conns}"
            log(f"[{idx}/{total}] {SIZE_LABELS[size]}, {conns} connections")
            phases = [("warm-up", args.warmup)] + [(f"round {i + 1}/{args.rounds}", args.duration)
                                                   for i in range(args.rounds)]
            for phase, dur in phases:
                for t in targets:
                    if t.failed:
                        continue
                    url = f"http://127.0.0.1:{t.port}/{size}"
                    proxy_pids = t.server.pids() if t.server else []
                    up_pids = upstream.pids()
                    limit = t.server.cpu_limit if t.server else None
                    th0 = limit.throttled() if limit else (0, 0)
                    c0 = (cpu_seconds(proxy_pids), cpu_seconds(up_pids), time.monotonic())
                    r, out = run_wrk(pin, args.threads, conns, dur, url, post=size == "post")
                    wall = time.monotonic() - c0[2]
                    if t.server:
                        r.proxy_cpu = 100 * (cpu_seconds(proxy_pids) - c0[0]) / wall
                    if limit:
                        th1 = limit.throttled()
                        if th1[0] > th0[0]:
                            r.throttled = 100 * (th1[1] - th0[1]) / (th1[0] - th0[0])
                    r.upstream_cpu = 100 * (cpu_seconds(up_pids) - c0[1]) / wall
                    if t.server is not None and not t.server.alive():
                        t.failed = f"exited with status {t.server.proc.returncode}"
                    if not upstream.alive():
                        raise Abort(f"the upstream nginx died during {t.name} {label} {phase}; "
                                    f"log {upstream.log_path}:\n{upstream.log_tail()}")
                    if r.errors_text():
                        errors.append(f"{t.name} {label} {phase}: {r.errors_text()}")
                    if t.failed:
                        errors.append(f"{t.name} {label} {phase}: server {t.failed}; log "
                                      f"{t.server.log_path}:\n{t.server.log_tail()}")
                    if phase != "warm-up":
                        results[key][t.name].append(r)
                    log(f"    {phase:<11} {t.name:<13} {fmt_rps(r.rps):>10} req/s  "
                        f"p50 {fmt_ms(r.p50_ms)} ms  p99 {fmt_ms(r.p99_ms)} ms  "
                        f"CPU proxy {fmt_pct(r.proxy_cpu)} upstream {fmt_pct(r.upstream_cpu)}"
                        + (f" throttled {fmt_pct(r.throttled)}" if r.throttled is not None else "")
                        + (f"  ERRORS: {r.errors_text()}" if r.errors_text() else ""))
                    if r.problem:
                        log("      wrk output:\n" + "\n".join("      | " + x for x in out.splitlines()))


# -------------------------------------------------------------------------------------- report


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def paired_ratio(a: list["WrkResult"], b: list["WrkResult"]) -> float | None:
    """The median over rounds of a's req/s ÷ b's in the same round. Rounds are interleaved, so the
    two runs of a pair are seconds apart: on a VM whose speed drifts over tens of seconds this
    cancels the drift that a ratio of two medians keeps."""
    pairs = [x.rps / y.rps for x, y in zip(a, b) if not x.problem and not y.problem and y.rps]
    return statistics.median(pairs) if pairs else None


def build_report(args, env: Env, targets: list[Target], results: dict, errors: list[str],
                 started: _dt.datetime, cmdline: str, versions: dict[str, str]) -> tuple[str, str]:
    """Returns (console text, markdown text)."""
    names = [t.name for t in targets]
    con: list[str] = []
    md: list[str] = []

    header = [
        ("date", started.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
        ("host", f"{platform.node()}, Linux {platform.release()}"),
        ("CPU", f"{cpu_model()}, nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))})"),
        ("command", cmdline),
        ("method", f"wrk -t{args.threads} --latency, {args.duration}s x {args.rounds} round(s) "
                   f"interleaved per scenario after a {args.warmup}s warm-up per target; "
                   f"medians over rounds"),
        ("topology", "wrk -> proxy (1 worker) -> upstream nginx (1 worker, keep-alive), "
                     "all on 127.0.0.1, access logs off"),
        ("pinning", env.pin.describe()),
        ("CPU limit", "none: each proxy may use all of its CPU" if env.proxy_cpu is None else
                      f"--proxy-cpu {env.proxy_cpu:g}: every proxy worker gets a CFS quota of "
                      f"{env.proxy_cpu:g} core ({int(env.proxy_cpu * CpuLimit.PERIOD_US)} us per "
                      f"{CpuLimit.PERIOD_US} us, a cgroup per proxy), so the proxy is the "
                      f"bottleneck and req/s ratios compare CPU cost per request"),
        ("versions", "; ".join(f"{k}: {v}" for k, v in versions.items())),
        ("load", f"1-min load average {args.load_start} before the servers started, {loadavg()} "
                 f"at the end (the bench itself adds ~2)" + busy_warning(args.load_start)),
    ]
    con.append("=" * 100)
    con.append("Remora benchmark")
    for k, v in header:
        con.append(f"  {k:<9} {v}")
    md.append(f"# Remora benchmark ({started.strftime('%Y-%m-%d')})")
    md.append("")
    for k, v in header:
        md.append(f"- **{k}**: {'`' + v + '`' if k == 'command' else v}")
    md.append("")

    # RSS
    rss_rows = [t for t in targets if t.server is not None]
    if rss_rows:
        con.append("")
        con.append(f"  Memory (VmRSS): idle after start / with {IDLE_CONNS} idle keep-alive "
                   f"downstream connections")
        md.append(f"## Memory (VmRSS)")
        md.append("")
        md.append(f"| target | idle after start | {IDLE_CONNS} idle keep-alive conns | note |")
        md.append("|---|---:|---:|---|")
        for t in rss_rows:
            con.append(f"    {t.name:<13} {fmt_mib(t.rss_idle_kib):>10} / {fmt_mib(t.rss_conns_kib):>10}"
                       f"   {t.rss_note}")
            md.append(f"| {t.name} | {fmt_mib(t.rss_idle_kib)} | {fmt_mib(t.rss_conns_kib)} | "
                      f"{t.rss_note} |")
        md.append("")

    remoras = [n for n in names if n.startswith("remora")]
    for size in args.sizes:
        for conns in args.conns:
            key = (size, conns)
            title = (f"{SIZE_LABELS[size]}, {conns} connections" if size == "post" else
                     f"{SIZE_LABELS[size]} response, {conns} connections")
            con.append("")
            con.append(f"--- {title} " + "-" * max(0, 95 - len(title)))
            con.append(f"  {'target':<13} {'req/s':>12} {'p50 ms':>10} {'p99 ms':>10} "
                       f"{'proxy CPU':>10} {'per core':>10} {'upstr CPU':>10} {'throttled':>9} "
                       f"{'spread':>7}   "
                       f"{'req/s per round':<30} errors")
            md.append(f"## {title}")
            md.append("")
            md.append("| target | req/s | p50 (ms) | p99 (ms) | proxy CPU | req/s per proxy core | "
                      "upstream CPU | throttled | spread | errors |")
            md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            med: dict[str, tuple] = {}
            throttled: dict[str, float | None] = {}
            for n in names:
                runs: list[WrkResult] = results.get(key, {}).get(n, [])
                rps = median([r.rps for r in runs if not r.problem])
                p50 = median([r.p50_ms for r in runs if not r.problem])
                p99 = median([r.p99_ms for r in runs if not r.problem])
                pcpu = median([r.proxy_cpu for r in runs])
                ucpu = median([r.upstream_cpu for r in runs])
                thr = median([r.throttled for r in runs])
                # Requests per second per core the proxy used, per round: the proxy's efficiency,
                # steadier than req/s when nobody is CPU-bound (the shared core sets the pace).
                eff = median([r.rps / (r.proxy_cpu / 100) for r in runs
                              if not r.problem and r.proxy_cpu])
                med[n] = (rps, p50, p99, eff)
                throttled[n] = thr
                ok = [r.rps for r in runs if not r.problem]
                spread = f"{100 * (max(ok) - min(ok)) / rps:.0f}%" if len(ok) > 1 and rps else "-"
                per_round = " ".join(f"{r.rps:,.0f}" for r in runs)
                errs = "; ".join(r.errors_text() for r in runs if r.errors_text()) or "0"
                con.append(f"  {n:<13} {fmt_rps(rps):>12} {fmt_ms(p50):>10} {fmt_ms(p99):>10} "
                           f"{fmt_pct(pcpu):>10} {fmt_rps(eff):>10} {fmt_pct(ucpu):>10} "
                           f"{fmt_pct(thr):>9} {spread:>7}   "
                           f"{per_round:<30} {errs}")
                md.append(f"| {n} | {fmt_rps(rps)} | {fmt_ms(p50)} | {fmt_ms(p99)} | {fmt_pct(pcpu)} | "
                          f"{fmt_rps(eff)} | {fmt_pct(ucpu)} | {fmt_pct(thr)} | {spread} | {errs} |")
            ratio_lines = []
            # The chain's own cost: each flavour against the bare proxy of the same run.
            if "remora-chain" in med and "remora" in med:
                ratio_lines.append("remora-chain/remora: req/s "
                                   f"{fmt_ratio(ratio(med['remora-chain'][0], med['remora'][0]))}, "
                                   "per core "
                                   f"{fmt_ratio(ratio(med['remora-chain'][3], med['remora'][3]))}")
            if "haproxy-chain" in med and "haproxy" in med:
                ratio_lines.append("haproxy-chain/haproxy: req/s "
                                   f"{fmt_ratio(ratio(med['haproxy-chain'][0], med['haproxy'][0]))}")
            for rn in remoras:
                for base in PROXY_BASELINES:
                    if base in med:
                        rr = ratio(med[rn][0], med[base][0])
                        pr = ratio(med[rn][2], med[base][2])
                        er = ratio(med[rn][3], med[base][3])
                        paired = paired_ratio(results.get(key, {}).get(rn, []),
                                              results.get(key, {}).get(base, []))
                        ratio_lines.append(f"{rn}/{base}: req/s {fmt_ratio(rr)} (paired "
                                           f"{fmt_ratio(paired)}), p99 "
                                           f"{fmt_ratio(pr)}, per core {fmt_ratio(er)}")
            # What each proxy's HTTP work costs: its CPU per request (1 / req/s per core) minus
            # the relay's, which does the same reads, writes and TCP segments and nothing else.
            # Only a relay that used up its quota batched as much per wakeup as a loaded proxy.
            relay_thr = throttled.get("tcp-relay")
            if "tcp-relay" in med and med["tcp-relay"][3] and (relay_thr or 0) < 90:
                ratio_lines.append(f"no tcp-relay floor: the relay was throttled in "
                                   f"{fmt_pct(relay_thr).strip()} of the periods (< 90%), so it "
                                   f"was not CPU-bound (needs --proxy-cpu and a quiet machine)")
            elif "tcp-relay" in med and med["tcp-relay"][3]:
                floor_us = 1e6 / med["tcp-relay"][3]
                above = [f"{n} {1e6 / med[n][3] - floor_us:.1f} µs" for n in med
                         if n not in ("direct", "tcp-relay") and med[n][3]]
                ratio_lines.append(f"CPU per request above the tcp-relay floor ({floor_us:.1f} µs): "
                                   + ", ".join(above))
            if ratio_lines:
                con.append("  ratios: " + " | ".join(ratio_lines))
                md.append("")
                md.append("Ratios: " + "; ".join(ratio_lines) + ".")
            md.append("")

    md.append("How to read: medians over the rounds. Ratios: req/s above 1.00x = Remora serves more "
              "requests per second; (paired) = the median of the per-round ratios, the steadier figure on a "
              "machine whose speed drifts; p99 below 1.00x = Remora's tail latency is lower. proxy/upstream CPU "
              "= % of one core used during the run (a proxy near 100% is the bottleneck). spread = "
              "(max - min) / median of req/s over the rounds; a large spread means a noisy machine. "
              "req/s per proxy core = req/s / (proxy CPU / 100), median over rounds: what each proxy "
              "gets out of the CPU it used; when no proxy is CPU-bound it is the fairer comparison. "
              "throttled (with --proxy-cpu) = % of the 10 ms CFS periods in which the proxy used up "
              "its quota: well above zero means the proxy, not the load generator, set the pace.")
    md.append("")

    con.append("")
    if errors:
        con.append(f"ERRORS ({len(errors)}): the run is not clean, exit status 1")
        for e in errors:
            con.append(f"  ! {e}")
        md.append("## Errors")
        md.append("")
        for e in errors:
            md.append(f"- {e}")
        md.append("")
    else:
        con.append("No socket errors, no non-2xx responses.")
    con.append("=" * 100)
    return "\n".join(con), "\n".join(md)


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    envd = os.environ.get
    p = argparse.ArgumentParser(
        prog="perf/bench.py",
        description="Remora vs HAProxy vs nginx (and the upstream directly) under wrk.",
        epilog="Environment defaults: BENCH_TARGETS, BENCH_ROUNDS, BENCH_DURATION, BENCH_WARMUP, "
               "REMORA_BIN. Exit: 0 ok, 1 errors in a run, 2 setup error.")
    p.add_argument("--targets", default=envd("BENCH_TARGETS", ",".join(DEFAULT_TARGETS)),
                   help=f"comma-separated, from {','.join(ALL_TARGETS)} (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=int(envd("BENCH_ROUNDS", "9")),
                   help="interleaved rounds per scenario (default: %(default)s)")
    p.add_argument("--duration", type=parse_duration_s, default=parse_duration_s(envd("BENCH_DURATION", "2")),
                   help="seconds per wrk run, e.g. 5 or 5s (default: %(default)s)")
    p.add_argument("--warmup", type=parse_duration_s, default=parse_duration_s(envd("BENCH_WARMUP", "1")),
                   help="warm-up seconds per target and scenario (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round x 2 s, 1 s warm-up")
    p.add_argument("--sizes", default="6b,16k",
                   help="scenarios from 6b,16k (GETs of those response sizes) and post (a 256-byte "
                        "POST) (default: %(default)s)")
    p.add_argument("--connections", default="64,256",
                   help="comma-separated wrk connection counts (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default: %(default)s)")
    p.add_argument("--remora", default=envd("REMORA_BIN", str(REPO / "build" / "remora")),
                   help="Remora binary (default: build/remora)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--proxy-cpu", type=proxy_cpu_cores, default=None, metavar="CORES",
                   help="cap every proxy worker at CORES of CPU time (cgroup CFS quota, root), "
                        "0.1 to 1, e.g. 0.5: the proxy becomes the bottleneck on a machine too small to "
                        "out-run it (default: no cap)")
    p.add_argument("--output", default=str(RESULTS_DIR / "latest.md"),
                   help="Markdown report path (default: perf/results/latest.md)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs and logs)")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.warmup = 1, 2, 1
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    bad = [t for t in a.targets if t not in ALL_TARGETS]
    if bad or not a.targets:
        p.error(f"unknown target(s) {bad}; choose from {','.join(ALL_TARGETS)}")
    if len(set(a.targets)) != len(a.targets):
        p.error("duplicate target")
    a.sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if not a.sizes or any(s not in SIZE_LABELS for s in a.sizes):
        p.error(f"--sizes: choose from {','.join(SIZE_LABELS)}")
    try:
        a.conns = [int(c) for c in a.connections.split(",") if c.strip()]
    except ValueError:
        p.error("--connections: integers, e.g. 64,256")
    if not a.conns or any(c < a.threads or c <= 0 for c in a.conns):
        p.error("--connections: positive and >= --threads")
    if a.rounds < 1 or a.threads < 1:
        p.error("--rounds and --threads must be >= 1")
    return a


def choose_pinning(no_pin: bool) -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return Pinning(None, None, None)
    if len(cpus) == 2:
        # The proxy gets a core of its own; the load generator and the upstream share the other.
        return Pinning(str(cpus[0]), str(cpus[1]), str(cpus[1]))
    return Pinning(str(cpus[0]), str(cpus[1]), ",".join(map(str, cpus[2:])))


def check_prereqs(args) -> Path:
    missing = [tool for tool, needed in [
        ("wrk", True),
        ("haproxy", "haproxy" in args.targets),
        ("nginx", True),  # the upstream is always nginx
    ] if needed and shutil.which(tool) is None]
    if missing:
        raise SetupError(f"missing tool(s): {', '.join(missing)} (Debian: apt-get install wrk "
                         f"haproxy nginx-light)")
    remora = Path(args.remora)
    if not remora.is_absolute():
        remora = (Path.cwd() / remora).resolve()
    if any(t.startswith("remora") for t in args.targets):
        if not (remora.is_file() and os.access(remora, os.X_OK)):
            raise SetupError(
                f"Remora binary not found at {remora}: run `make build` first (or pass "
                f"--remora PATH, or leave it out with --targets direct,haproxy,nginx)")
    return remora


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 65536)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def on_signal(signum, _frame):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = _dt.datetime.now().astimezone()
    args.load_start = loadavg()
    cmdline = shlex.join(["python3", "perf/bench.py", *argv])
    # Installed explicitly: a shell without job control starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    servers: list[Server] = []
    tmp: Path | None = None
    rc = 2
    try:
        remora_bin = check_prereqs(args)
        raise_nofile()
        pin = choose_pinning(args.no_pin)
        tmp = Path(tempfile.mkdtemp(prefix="remora-bench-"))
        os.chmod(tmp, 0o755)  # nginx workers may run as an unprivileged user: they read www/

        upstream, up_ports = start_upstream(tmp, pin, servers)
        status, body = http_get(up_ports[0], "/16k")
        if status != 200 or body != BODIES["16k"]:
            raise SetupError(f"upstream GET /16k -> {status}, {len(body)} bytes")

        env = Env(tmp=tmp, pin=pin, upstream_ports=up_ports, remora_bin=remora_bin,
                  proxy_cpu=args.proxy_cpu)
        versions = {
            "wrk": tool_version(["wrk", "-v"]).split(" Copyright")[0],
            "nginx": tool_version(["nginx", "-v"]).replace("nginx version: ", ""),
        }
        if "haproxy" in args.targets:
            versions["haproxy"] = " ".join(tool_version(["haproxy", "-v"]).split()[:3])
        if any(t.startswith("remora") for t in args.targets):
            rev = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
            versions["remora"] = f"{remora_bin} (git {rev})"

        log(f"temp dir {tmp}; {pin.describe()}")
        if busy_warning(args.load_start):
            log(f"WARNING: 1-min load average is {args.load_start} before the start: other work "
                f"on this machine will skew the numbers")
        targets: list[Target] = []
        errors: list[str] = []
        for name in args.targets:
            t = start_target(name, env, servers)
            err = measure_rss(t)
            if err:
                errors.append(err)
            targets.append(t)
            log(f"  {name:<13} http://127.0.0.1:{t.port}  "
                + (f"RSS idle {fmt_mib(t.rss_idle_kib)}, {IDLE_CONNS} conns "
                   f"{fmt_mib(t.rss_conns_kib)} {t.rss_note}" if t.server else "(upstream)"))

        results: dict[tuple[str, int], dict[str, list[WrkResult]]] = {}
        try:
            run_scenarios(args, pin, upstream, targets, results, errors)
        except Abort as e:
            errors.append(f"ABORTED: {e}")

        console, md = build_report(args, env, targets, results, errors, started, cmdline, versions)
        log("")
        log(console)
        out_path = Path(args.output)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(md + "\n")
        raw = {
            "date": started.isoformat(), "command": cmdline, "pinning": pin.describe(),
            "rss_kib": {t.name: {"idle": t.rss_idle_kib, "conns": t.rss_conns_kib}
                        for t in targets if t.server},
            "runs": {f"{s}/c{c}": {n: [r.__dict__ for r in rs] for n, rs in per.items()}
                     for (s, c), per in results.items()},
            "errors": errors,
        }
        out_path.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
        log(f"Markdown: {out_path}")
        rc = 1 if errors else 0
        return rc
    except SetupError as e:
        log(f"bench: error: {e}")
        rc = 2
        return rc
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"\nbench: interrupted ({str(e) or 'Ctrl-C'}); stopping servers")
        rc = 130
        return rc
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _running_wrk is not None and _running_wrk.poll() is None:
            _running_wrk.kill()
            _running_wrk.wait()
        for s in reversed(servers):
            s.stop()
        if tmp is not None:
            if args.keep_tmp or rc not in (0, 130):
                log(f"configs and logs kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
