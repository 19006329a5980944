#!/usr/bin/env python3
"""Control-plane benchmark (`make bench-control`): propagation time and heartbeat cost.

1. Propagation: one registry change (PUT or DELETE of one instance), timed from the moment the
   REST call is sent, until the LAST of N proxies has ACKed the snapshot that carries it. N real
   `remora` processes (1 worker each, own node_id) subscribe to one real `remora-control` whose
   registry holds E endpoints spread over 10 services that the proxies' routes use. Cells:
   N x E, many spaced changes per cell, p50/p99/max.

   The ACK moment comes from `GET /v1/nodes`: `acked_at` (UTC, ms) is the control plane's clock
   when it accepted the node's ACK, `sent_at` when it wrote the snapshot to the node's stream.
   The script polls /v1/nodes (every --poll-ms) only to learn *that* every node has ACKed; the
   figure itself is acked_at - send time, so polling does not add to it.

2. Heartbeats: H instances (default 10,000) renew their TTL every 10 s (PUT .../heartbeat),
   spread evenly over the period by an asyncio load generator on keep-alive connections, with a
   few proxies connected. The control plane's CPU (utime+stime from /proc/PID/stat, % of one
   core) and memory (VmRSS, VmHWM) are read over the measurement window.

Python 3.11 standard library only. Every process is a child of this script in its own session,
on 127.0.0.1 ports found by binding port 0, with configs, state file and logs in a temp dir; all
of them are stopped on exit, error, Ctrl-C or SIGTERM. See perf/README.md.

Exit status: 0 ok, 1 a cell had errors (a proxy died, NACKs, failed requests), 2 setup error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import http.client
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "perf" / "results"

SERVICES = 10  # the endpoints are spread over this many services (= clusters, one route each)
READY_TIMEOUT_S = 60.0
CHANGE_TIMEOUT_S = 30.0  # one change must be ACKed by every proxy within this
SUBWINDOW_S = 10.0  # the heartbeat window's CPU is also reported per slice of this length
DEFAULT_DEBOUNCE = "50ms"  # remora-control's defaults (control/README.md)
DEFAULT_MAX_DELAY = "500ms"


class SetupError(Exception):
    """Cannot run the benchmark (missing binary, a process did not come up)."""


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (all its threads), in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def wait_quiet(pids: list[int], window_s: float = 0.25, max_share: float = 0.02,
               timeout_s: float = 15.0) -> None:
    """Waits until the processes together use under max_share of one core over window_s (or
    timeout_s passes: then the cell runs anyway, and its first samples may show it)."""
    deadline = time.monotonic() + timeout_s
    before = sum(cpu_seconds(p) or 0.0 for p in pids)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = sum(cpu_seconds(p) or 0.0 for p in pids)
        if now - before <= max_share * window_s + 1.0 / CLK_TCK:
            return
        before = now
    log(f"  warning: the fleet was still busy after {timeout_s:.0f} s; measuring anyway")


def parse_wall(text: str | None) -> float | None:
    """'2024-05-01T12:00:00.123Z' -> seconds since the epoch."""
    if not text:
        return None
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=_dt.timezone.utc).timestamp()


def percentile(xs: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the samples at or below it."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100)
    return s[int(k) - 1]


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def fmt_n(n: int) -> str:
    return f"{n:,}"


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as e:
        log(f"WARNING: cannot raise RLIMIT_NOFILE to {need} ({e}); soft limit stays {soft}")


# ---------------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    log_file: object = None
    term_sent: bool = False

    def start(self) -> None:
        self.term_sent = False
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: terminal Ctrl-C is ours to handle
            cwd=str(self.log_path.parent))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + line for line in lines[-n:])

    def signal_stop(self) -> None:
        """SIGTERM to its group once, without waiting (stop() waits). Once: a second SIGTERM
        makes remora skip its drain."""
        if self.alive() and not self.term_sent:
            self.term_sent = True
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the child's pid
        self.signal_stop()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.log_file:
            self.log_file.close()
            self.log_file = None


# Every process this script started, so the `finally` in main() can stop what is left.
_procs: list[Proc] = []


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM to all first, then wait for each (50 proxies drain in parallel)."""
    for p in procs:
        p.signal_stop()
    for p in procs:
        p.stop()
        if p in _procs:
            _procs.remove(p)


class Http:
    """One blocking keep-alive connection (http.client), reopened after an error."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                headers = {"content-type": "application/json"} if data is not None else {}
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw.strip() else None)
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_for(check, what: str, deadline_s: float, procs: list[Proc] = ()) -> object:
    """Polls `check` until it returns something truthy, a process exits, or the deadline."""
    deadline = time.monotonic() + deadline_s
    delay = 0.005
    last = ""
    while True:
        for p in procs:
            if not p.alive():
                raise SetupError(f"{p.name} exited (status {p.proc.returncode}) before {what}; "
                                 f"log {p.log_path}:\n{p.log_tail()}")
        try:
            v = check()
            if v:
                return v
            last = "not yet"
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise SetupError(f"{what}: not reached within {deadline_s:.0f}s ({last})")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# ------------------------------------------------------------------------------ control plane


def control_yaml(port: int, state_file: str, debounce: str = DEFAULT_DEBOUNCE,
                 max_delay: str = DEFAULT_MAX_DELAY) -> str:
    return f"""# remora-control for perf/bench_control.py
listen: 127.0.0.1:{port}
state_file: {state_file}
log_level: info
default_ttl: 30s
discovery:
  debounce: {debounce}
  max_delay: {max_delay}
  heartbeat_interval: 10s
"""


class ControlPlane:
    def __init__(self, build: Path, tmp: Path, name: str, persist: bool,
                 debounce: str = DEFAULT_DEBOUNCE, max_delay: str = DEFAULT_MAX_DELAY):
        self.build = build
        self.debounce = debounce
        self.max_delay = max_delay
        self.dir = tmp / name
        self.dir.mkdir()
        self.name = name
        self.persist = persist
        self.proc: Proc | None = None
        self.port = 0
        self.http: Http | None = None

    def start(self) -> None:
        state = str(self.dir / "remora-control.state") if self.persist else '""'
        for _attempt in range(3):
            self.port = free_ports(1)[0]
            cfg = self.dir / "control.yaml"
            cfg.write_text(control_yaml(self.port, state, self.debounce, self.max_delay))
            self.proc = Proc(self.name, [str(self.build / "remora-control"), "--config", str(cfg)],
                             self.dir / "control.log")
            self.proc.start()
            _procs.append(self.proc)
            self.http = Http(self.port)
            try:
                wait_for(lambda: self.http.call("GET", "/healthz")[0] == 200,
                         f"{self.name} GET /healthz == 200", READY_TIMEOUT_S, [self.proc])
                return
            except SetupError:
                # A port taken between free_ports() and the bind: try another one.
                if "cannot listen" in self.proc.log_tail(5):
                    stop_all([self.proc])
                    continue
                raise
        raise SetupError(f"{self.name}: no free port after 3 attempts")

    def nodes(self) -> list[dict]:
        status, body = self.http.call("GET", "/v1/nodes")
        if status != 200:
            raise ValueError(f"GET /v1/nodes -> {status}")
        return body

    def version(self) -> int:
        status, body = self.http.call("GET", "/healthz")
        if status != 200:
            raise ValueError(f"GET /healthz -> {status}")
        return int(body["version"])


# ------------------------------------------------------------------------------------ proxies


def proxy_yaml(node_id: str, listen: int, admin: int, cp_port: int) -> str:
    routes = "\n".join(
        f"      - match: {{ prefix: /svc-{i}/ }}\n        cluster: svc-{i}" for i in range(SERVICES))
    return f"""# remora for perf/bench_control.py: every cluster comes from the control plane
node_id: {node_id}
workers: 1
log_level: info
drain_timeout: 1s
admin: {{ address: 127.0.0.1:{admin} }}
control_plane: {{ address: 127.0.0.1:{cp_port} }}
listeners:
  - name: ingress
    address: 127.0.0.1:{listen}
    routes:
{routes}
"""


class Fleet:
    """The running proxies: proxy i has node id bench-p<i>."""

    def __init__(self, build: Path, tmp: Path, cp: ControlPlane):
        self.build = build
        self.dir = tmp / f"proxies-{cp.name}"
        self.dir.mkdir()
        self.cp = cp
        self.procs: list[Proc] = []

    def node_ids(self) -> list[str]:
        return [p.name for p in self.procs]

    def resize(self, n: int) -> None:
        """Starts or stops proxies until n run, then waits until every one has ACKed the control
        plane's current version."""
        if n < len(self.procs):
            stop_all(self.procs[n:])
            del self.procs[n:]
        started = []
        while len(self.procs) < n:
            i = len(self.procs)
            node = f"bench-p{i}"
            listen, admin = free_ports(2)
            cfg = self.dir / f"{node}.yaml"
            cfg.write_text(proxy_yaml(node, listen, admin, self.cp.port))
            p = Proc(node, [str(self.build / "remora"), "--config", str(cfg)],
                     self.dir / f"{node}.log")
            p.start()
            _procs.append(p)
            self.procs.append(p)
            started.append(p)
        self.wait_all_acked(self.cp.version(), f"{n} proxies connected and ACKed")

    def wait_all_acked(self, version: int, what: str) -> None:
        ids = set(self.node_ids())

        def check():
            got = {n["node_id"]: n for n in self.cp.nodes() if n["node_id"] in ids}
            return len(got) == len(ids) and all(
                n["connected"] and n["acked_version"] is not None
                and int(n["acked_version"]) >= version for n in got.values())

        try:
            wait_for(check, what, READY_TIMEOUT_S, self.procs + [self.cp.proc])
        except SetupError as e:
            # Most likely a port race on a listener: name the proxies that are not there.
            dead = [p for p in self.procs if not p.alive()]
            extra = "".join(f"\n{p.name} log:\n{p.log_tail(8)}" for p in dead[:3])
            raise SetupError(f"{e}{extra}") from None

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.alive()]


# ----------------------------------------------------------------------- asyncio load client


class AsyncConn:
    """A keep-alive HTTP/1.1 connection on raw asyncio streams, one request at a time."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            await self.open()
        head = (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise ConnectionError(f"{method} {path}: connection closed by the control plane")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


def instance_body(address: str, ttl: str) -> bytes:
    return json.dumps({"address": address, "ttl": ttl}).encode()


def population(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    """Instances start..n-1 of the base population: (service, id, address), spread round-robin
    over SERVICES services; addresses are unique (nothing ever connects to them)."""
    out = []
    for k in range(start, n):
        svc = k % SERVICES
        j = k // SERVICES
        out.append((f"svc-{svc}", f"i{k}", f"10.{svc}.{j // 250}.{j % 250 + 1}:8080"))
    return out


REGISTER_CONCURRENCY = 128  # clients: each state write (group commit) carries up to this many


async def register_all(port: int, instances: list[tuple[str, str, str]], ttl: str | None,
                       concurrency: int = REGISTER_CONCURRENCY) -> tuple[int, list[str]]:
    """Registers instances (or, with ttl None, heartbeats each once) on `concurrency` keep-alive
    connections; returns (ok, errors)."""
    queue = list(reversed(instances))
    errors: list[str] = []
    ok = 0

    async def worker():
        nonlocal ok
        c = AsyncConn(port)
        try:
            while queue:
                svc, iid, addr = queue.pop()
                if ttl is None:
                    status = await c.request("PUT", f"/v1/services/{svc}/instances/{iid}/heartbeat")
                else:
                    status = await c.request("PUT", f"/v1/services/{svc}/instances/{iid}",
                                             instance_body(addr, ttl))
                if status in (200, 201):
                    ok += 1
                elif len(errors) < 5:
                    errors.append(f"PUT {svc}/{iid}{'/heartbeat' if ttl is None else ''} -> {status}")
        finally:
            c.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(instances)) or 1)))
    return ok, errors


def bulk_register(cp: ControlPlane, instances, ttl: str | None) -> float:
    """Registers every instance with `ttl` (None: heartbeats each once); returns the seconds."""
    t0 = time.monotonic()
    ok, errors = asyncio.run(register_all(cp.port, instances, ttl))
    if errors or ok != len(instances):
        what = "registration" if ttl else "renewal"
        raise SetupError(f"bulk {what}: {ok}/{len(instances)} ok; {errors}")
    return time.monotonic() - t0


def wait_durable(cp: ControlPlane) -> None:
    """Until every change is on disk (state writes done)."""
    def check():
        status, body = cp.http.call("GET", "/healthz")
        return status == 200 and body["version"] == body["durable_version"]
    wait_for(check, f"{cp.name}: every change durable", READY_TIMEOUT_S, [cp.proc])


# ------------------------------------------------------------------------------- propagation


@dataclass
class Cell:
    proxies: int
    endpoints: int
    samples_ms: list[float] = field(default_factory=list)  # change sent -> last proxy ACK
    first_sent_ms: list[float] = field(default_factory=list)  # change sent -> first push written
    put_ms: list[float] = field(default_factory=list)  # change sent -> REST answer (durable)
    fanout_ms: list[float] = field(default_factory=list)  # first push written -> last ACK
    detect_ms: list[float] = field(default_factory=list)  # change sent -> script saw every ACK
    send_spread_ms: list[float] = field(default_factory=list)  # first -> last stream written
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    cp_rss_kib: int | None = None
    cp_hwm_kib: int | None = None
    snapshot_kib: float | None = None
    proxy_cpu_ms: float | None = None  # CPU one proxy spent per change (parse, validate, apply)
    cp_cpu_ms: float | None = None  # control-plane CPU per change (with the script's polling)


def run_cell(cp: ControlPlane, fleet: Fleet, cell: Cell, changes: int, poll_s: float,
             gap_s: float, serial: list[int]) -> None:
    put = Http(cp.port)
    try:
        run_changes(cp, fleet, cell, changes, poll_s, gap_s, serial, put)
    finally:
        put.close()


def run_changes(cp: ControlPlane, fleet: Fleet, cell: Cell, changes: int, poll_s: float,
                gap_s: float, serial: list[int], put: Http) -> None:
    ids = set(fleet.node_ids())
    rng = random.Random(cell.proxies * 100003 + cell.endpoints)
    registered: tuple[str, str] | None = None
    for k in range(changes):
        # Alternately register a new instance and deregister it: the population stays at E.
        if registered is None:
            s = serial[0]
            serial[0] += 1
            svc, iid = f"svc-{s % SERVICES}", f"change-{s}"
            method, path = "PUT", f"/v1/services/{svc}/instances/{iid}"
            body = {"address": f"10.250.{(s // 250) % 250}.{s % 250 + 1}:9000", "ttl": "1h"}
        else:
            svc, iid = registered
            method, path, body = "DELETE", f"/v1/services/{svc}/instances/{iid}", None
        t_wall = time.time()
        t0 = time.monotonic()
        status, answer = put.call(method, path, body)
        t_put = time.monotonic()
        if status not in (200, 201):
            cell.errors.append(f"{method} {path} -> {status} {answer}")
            return
        registered = (svc, iid) if method == "PUT" else None
        version = int(answer["version"])
        deadline = t0 + CHANGE_TIMEOUT_S
        timed_out = False
        while True:
            nodes = [n for n in cp.nodes() if n["node_id"] in ids]
            t_seen = time.monotonic()
            if len(nodes) == len(ids) and all(
                    n["acked_version"] is not None and int(n["acked_version"]) >= version
                    for n in nodes):
                break
            for p in fleet.procs:
                if not p.alive():
                    cell.errors.append(f"{p.name} exited (status {p.proc.returncode}); log "
                                       f"{p.log_path}:\n{p.log_tail(8)}")
                    return
            nacked = [n["node_id"] for n in nodes
                      if n["nacked_version"] is not None and int(n["nacked_version"]) >= version]
            if nacked:
                why = next(n["last_error"] for n in nodes if n["node_id"] == nacked[0])
                cell.errors.append(f"version {version} NACKed by {nacked[:3]}: {why}")
                return
            if t_seen > deadline:
                late = [f"{n['node_id']} (connected {n['connected']}, acked {n['acked_version']}, "
                        f"sent {n['sent_version']} at {n['sent_at']})" for n in nodes
                        if n["acked_version"] is None or int(n["acked_version"]) < version]
                missing = ids - {n["node_id"] for n in nodes}
                cell.errors.append(f"version {version} not ACKed by every proxy within "
                                   f"{CHANGE_TIMEOUT_S:.0f}s: {len(late)} late: {late[:3]}"
                                   + (f"; not in /v1/nodes: {sorted(missing)[:3]}" if missing else ""))
                timed_out = True
                break
            time.sleep(poll_s)
        if timed_out:
            # The next change gives the late proxies a newer version to ACK; stop after three.
            if len(cell.errors) >= 3:
                return
        elif any(int(n["acked_version"]) != version for n in nodes):
            # Something else changed the state meanwhile (should not happen: TTLs are 1h).
            cell.skipped += 1
        else:
            acks = [parse_wall(n["acked_at"]) for n in nodes]
            sents = [parse_wall(n["sent_at"]) for n in nodes]
            cell.samples_ms.append((max(acks) - t_wall) * 1000)
            cell.first_sent_ms.append((min(sents) - t_wall) * 1000)
            cell.fanout_ms.append((max(acks) - min(sents)) * 1000)
            cell.send_spread_ms.append((max(sents) - min(sents)) * 1000)
            cell.put_ms.append((t_put - t0) * 1000)
            cell.detect_ms.append((t_seen - t0) * 1000)
        # Spaced well past the debounce window (and jittered, so nothing phase-locks).
        time.sleep(gap_s * (0.75 + 0.5 * rng.random()))


def snapshot_size_kib(cp: ControlPlane) -> float | None:
    """Size of one pushed snapshot line (what every proxy parses), read from a discovery stream
    opened as a throw-away node."""
    try:
        s = socket.create_connection(("127.0.0.1", cp.port), timeout=10)
    except OSError:
        return None
    buf = b""

    def need(n: int) -> None:
        nonlocal buf
        while len(buf) < n:
            more = s.recv(1 << 20)
            if not more:
                raise OSError("stream closed")
            buf += more

    def until(sep: bytes) -> bytes:
        nonlocal buf
        while sep not in buf:
            need(len(buf) + 1)
        head, _, buf = buf.partition(sep)
        return head

    try:
        s.sendall(b"GET /v1/discovery?node=bench-size-probe HTTP/1.1\r\nhost: x\r\n\r\n")
        until(b"\r\n\r\n")
        data = b""
        while b"\n" not in data:  # chunked: "<hex>\r\n<data>\r\n"; a line may span chunks
            size = int(until(b"\r\n").split(b";")[0], 16)
            need(size + 2)
            data += buf[:size]
            buf = buf[size + 2:]
        return len(data.split(b"\n", 1)[0]) / 1024
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def run_propagation(args, build: Path, tmp: Path, errors: list[str]) -> list[Cell]:
    cp = ControlPlane(build, tmp, "cp-propagation", args.persist, args.debounce, args.max_delay)
    cp.start()
    fleet = Fleet(build, tmp, cp)
    cells: list[Cell] = []
    registered = 0
    serial = [0]
    try:
        for e in args.endpoints:
            # Stop the proxies first: a bulk registration would push every 500 ms to all of them.
            fleet.resize(0)
            if e > registered:
                secs = bulk_register(cp, population(e, registered), "1h")
                log(f"  registry: {fmt_n(e)} endpoints ({fmt_n(e - registered)} registered in "
                    f"{secs:.1f} s)")
                registered = e
            snap_kib = snapshot_size_kib(cp)
            for n in args.proxies:
                t0 = time.monotonic()
                fleet.resize(n)
                # Their start-up (parse, first snapshot, logs) is not what we time: wait until
                # the fleet and the control plane are idle, so the first change meets warm
                # processes as every later one does.
                wait_quiet(fleet.pids() + [cp.proc.pid])
                cell = Cell(proxies=n, endpoints=e, snapshot_kib=snap_kib)
                log(f"  cell {n} prox{'y' if n == 1 else 'ies'} x {fmt_n(e)} endpoints: ready in "
                    f"{time.monotonic() - t0:.1f} s, {args.changes} changes ...")
                pids = fleet.pids()
                p0 = [cpu_seconds(pid) or 0.0 for pid in pids]
                c0 = cpu_seconds(cp.proc.pid) or 0.0
                run_cell(cp, fleet, cell, args.changes, args.poll_ms / 1000, args.gap_ms / 1000,
                         serial)
                done = len(cell.samples_ms) + cell.skipped
                if done:
                    p1 = [cpu_seconds(pid) or 0.0 for pid in pids]
                    cell.proxy_cpu_ms = sum(b - a for a, b in zip(p0, p1)) / len(pids) / done * 1000
                    cell.cp_cpu_ms = ((cpu_seconds(cp.proc.pid) or 0.0) - c0) / done * 1000
                cell.cp_rss_kib = proc_status_kib(cp.proc.pid, "VmRSS")
                cell.cp_hwm_kib = proc_status_kib(cp.proc.pid, "VmHWM")
                cells.append(cell)
                for err in cell.errors:
                    errors.append(f"cell {n} x {e}: {err}")
                log(f"    p50 {fmt_ms(percentile(cell.samples_ms, 50))} ms, p99 "
                    f"{fmt_ms(percentile(cell.samples_ms, 99))} ms, max "
                    f"{fmt_ms(max(cell.samples_ms) if cell.samples_ms else None)} ms "
                    f"({len(cell.samples_ms)} samples)")
                if cell.errors:
                    fleet.resize(0)  # start the next cell from a clean slate
    finally:
        stop_all(fleet.procs)
        fleet.procs.clear()
        stop_all([cp.proc])
    return cells


# -------------------------------------------------------------------------------- heartbeats


@dataclass
class HeartbeatResult:
    instances: int
    period_s: float
    window_s: float = 0.0
    proxies: int = 0
    register_s: float = 0.0
    idle_cpu_pct: float | None = None
    cpu_pct: float | None = None
    rss_before_kib: int | None = None
    rss_kib: int | None = None
    hwm_kib: int | None = None
    sent: int = 0  # heartbeats answered inside the window
    rate: float = 0.0
    failures: int = 0
    late_p99_ms: float | None = None  # how far behind schedule the generator sent
    lat_p50_ms: float | None = None
    lat_p99_ms: float | None = None
    gen_cpu_pct: float | None = None
    versions_changed: int = 0
    lapsed_at_start: int = 0
    slices_pct: list[float] = field(default_factory=list)  # CPU % per SUBWINDOW_S slice


async def heartbeat_load(port: int, instances: list[tuple[str, str, str]], period_s: float,
                         conns: int, warmup_s: float, window_s: float, on_window) -> dict:
    """Instance k heartbeats at t0 + k/H * period + r * period; connection c sends for the
    instances k = c mod conns, in schedule order, one request at a time (keep-alive). Runs
    warmup_s, then calls on_window('start'), runs window_s (calling on_window('tick') every
    SUBWINDOW_S), calls on_window('end')."""
    h = len(instances)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    t_start = t0 + warmup_s
    t_end = t_start + window_s
    stats = {"sent": 0, "fail": 0, "late": [], "lat": [], "errors": []}
    paths = [f"/v1/services/{svc}/instances/{iid}/heartbeat" for svc, iid, _ in instances]

    async def worker(c: int):
        conn = AsyncConn(port)
        await conn.open()
        try:
            r = 0
            while True:
                for k in range(c, h, conns):
                    due = t0 + (k / h + r) * period_s
                    if due >= t_end:
                        return
                    now = loop.time()
                    if due > now:
                        await asyncio.sleep(due - now)
                    sent = loop.time()
                    try:
                        status = await conn.request("PUT", paths[k])
                    except (ConnectionError, OSError) as e:
                        status = 0
                        if len(stats["errors"]) < 5:
                            stats["errors"].append(str(e))
                    done = loop.time()
                    if t_start <= sent < t_end:
                        stats["sent"] += 1
                        stats["late"].append(sent - due)
                        stats["lat"].append(done - sent)
                        if status != 200:
                            stats["fail"] += 1
                            if status and len(stats["errors"]) < 5:
                                stats["errors"].append(f"heartbeat {paths[k]} -> {status}")
                r += 1
        finally:
            conn.close()

    async def marks():
        # "start", a "tick" every SUBWINDOW_S (the spread between slices shows the noise), "end".
        await asyncio.sleep(max(0.0, t_start - loop.time()))
        on_window("start")
        t = t_start + SUBWINDOW_S
        while t < t_end - 0.5:
            await asyncio.sleep(max(0.0, t - loop.time()))
            on_window("tick")
            t += SUBWINDOW_S
        await asyncio.sleep(max(0.0, t_end - loop.time()))
        on_window("end")

    await asyncio.gather(marks(), *(worker(c) for c in range(conns)))
    return stats


def run_heartbeats(args, build: Path, tmp: Path, errors: list[str]) -> HeartbeatResult:
    res = HeartbeatResult(instances=args.hb_instances, period_s=args.hb_period,
                          window_s=args.hb_window, proxies=args.hb_proxies)
    cp = ControlPlane(build, tmp, "cp-heartbeat", args.persist, args.debounce, args.max_delay)
    cp.start()
    fleet = Fleet(build, tmp, cp)
    try:
        instances = population(args.hb_instances)
        # The default TTL (30s); no version may change during the window (checked below).
        res.register_s = bulk_register(cp, instances, "30s")
        log(f"  registry: {fmt_n(len(instances))} instances (ttl 30s) registered in "
            f"{res.register_s:.1f} s")
        fleet.resize(args.hb_proxies)
        # One quick renewal of every instance: those registered first may be close to their TTL
        # (or past it, if the registration took over 30 s); then the evenly spread schedule
        # starts with every deadline at least 20 s away.
        v0 = cp.version()
        secs = bulk_register(cp, instances, None)
        res.lapsed_at_start = cp.version() - v0
        wait_durable(cp)
        fleet.wait_all_acked(cp.version(), f"{args.hb_proxies} proxies ACKed the current version")
        log(f"  renewed every instance once in {secs:.1f} s"
            + (f" ({res.lapsed_at_start} had lapsed during the registration)"
               if res.lapsed_at_start else ""))
        pid = cp.proc.pid
        res.rss_before_kib = proc_status_kib(pid, "VmRSS")
        # Idle reference: the same process, the same proxies, no heartbeats.
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.hb_idle)
        c1, w1 = cpu_seconds(pid), time.monotonic()
        res.idle_cpu_pct = (c1 - c0) / (w1 - w0) * 100
        log(f"  idle control plane: {res.idle_cpu_pct:.2f}% of one core over {w1 - w0:.0f} s; "
            f"heartbeats: {fmt_n(len(instances))} every {args.hb_period:g} s on {args.hb_conns} "
            f"connections, {args.hb_period:g} s warm-up + {args.hb_window:g} s measured ...")
        marks: list[tuple[str, float, float, float, int]] = []

        def on_window(what: str) -> None:
            marks.append((what, cpu_seconds(pid), time.monotonic(), time.process_time(),
                          cp.version() if what != "tick" else 0))

        stats = asyncio.run(heartbeat_load(cp.port, instances, args.hb_period, args.hb_conns,
                                           args.hb_period, args.hb_window, on_window))
        (_, cs, ws, gs, vs), (_, ce, we, ge, ve) = marks[0], marks[-1]
        res.cpu_pct = (ce - cs) / (we - ws) * 100
        res.slices_pct = [(b[1] - a[1]) / (b[2] - a[2]) * 100 for a, b in zip(marks, marks[1:])]
        res.gen_cpu_pct = (ge - gs) / (we - ws) * 100
        res.rss_kib = proc_status_kib(pid, "VmRSS")
        res.hwm_kib = proc_status_kib(pid, "VmHWM")
        res.sent = stats["sent"]
        res.rate = stats["sent"] / (we - ws)
        res.failures = stats["fail"]
        res.late_p99_ms = (percentile(stats["late"], 99) or 0) * 1000
        res.lat_p50_ms = (percentile(stats["lat"], 50) or 0) * 1000
        res.lat_p99_ms = (percentile(stats["lat"], 99) or 0) * 1000
        res.versions_changed = ve - vs
        target_rate = len(instances) / args.hb_period
        if stats["fail"]:
            errors.append(f"heartbeats: {stats['fail']} failed: {stats['errors']}")
        if res.rate < 0.95 * target_rate:
            errors.append(f"heartbeats: the generator reached {res.rate:.0f} req/s of "
                          f"{target_rate:.0f} (too slow: the CPU figure is not for the target load)")
        if res.versions_changed:
            errors.append(f"heartbeats: the state version moved by {res.versions_changed} during "
                          f"the window (instances lapsed: heartbeats too late, or registration "
                          f"took over {2 * args.hb_period:g} s)")
        log(f"    control plane {res.cpu_pct:.2f}% of one core at {res.rate:.0f} heartbeats/s; "
            f"RSS {fmt_mib(res.rss_kib)} (peak {fmt_mib(res.hwm_kib)})")
    finally:
        stop_all(fleet.procs)
        fleet.procs.clear()
        stop_all([cp.proc])
    return res


# ------------------------------------------------------------------------------------ report


def build_report(args, cells: list[Cell], hb: HeartbeatResult | None, errors: list[str],
                 started: _dt.datetime, cmdline: str, load_start: str, rev: str) -> tuple[str, str]:
    out: list[str] = []
    out.append(f"# remora-control: propagation and heartbeat cost ({'quick' if args.quick else 'full'})")
    out.append("")
    out.append(f"- date: {started.strftime('%Y-%m-%d %H:%M %Z')}; command: `{cmdline}`")
    out.append(f"- machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} "
               f"{platform.release()}; load average before {load_start}, after {loadavg()}; "
               f"no CPU pinning (control plane, proxies and the script share every core)")
    out.append(f"- binaries: {args.build_dir}/remora-control, {args.build_dir}/remora (git {rev}); "
               f"debounce {args.debounce} quiet / {args.max_delay} max; state file "
               f"{'on disk (every change is fsynced before it is pushed)' if args.persist else 'off (memory only)'}; "
               f"proxies: 1 worker each")
    if cells:
        out.append("")
        out.append("## Propagation: registry change -> last proxy ACK")
        out.append("")
        out.append(f"One change = one `PUT` (register) or `DELETE` (deregister) of an instance, "
                   f"timed from the moment the REST call is sent to the control plane's clock at "
                   f"the last proxy's ACK (`acked_at` in `GET /v1/nodes`, ms resolution). "
                   f"{args.changes} changes per cell, one at a time, ~{args.gap_ms} ms apart after "
                   f"the last ACK. Endpoints spread over {SERVICES} services, one route each. "
                   f"Percentiles are nearest-rank: with {args.changes} samples p99 is the "
                   f"{-(-args.changes * 99 // 100)}th value.")
        out.append("")
        out.append("| proxies | endpoints | snapshot | p50 ms | p99 ms | max ms | PUT answered (p50) "
                   "| first push written (p50) | push -> last ACK (p50) | CPU per change: one proxy "
                   "/ control plane | control-plane RSS (peak) |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in cells:
            out.append(
                f"| {c.proxies} | {fmt_n(c.endpoints)} | "
                f"{'-' if c.snapshot_kib is None else f'{c.snapshot_kib:,.0f} KiB'} | "
                f"{fmt_ms(percentile(c.samples_ms, 50))} | {fmt_ms(percentile(c.samples_ms, 99))} | "
                f"{fmt_ms(max(c.samples_ms) if c.samples_ms else None)} | "
                f"{fmt_ms(percentile(c.put_ms, 50))} | {fmt_ms(percentile(c.first_sent_ms, 50))} | "
                f"{fmt_ms(percentile(c.fanout_ms, 50))} | "
                f"{fmt_ms(c.proxy_cpu_ms)} / {fmt_ms(c.cp_cpu_ms)} ms | "
                f"{fmt_mib(c.cp_rss_kib)} ({fmt_mib(c.cp_hwm_kib)}) |")
        out.append("")
        out.append("Columns: *PUT answered* = the REST answer (after the state file's fsync); "
                   "*first push written* = change sent -> the snapshot written to the first "
                   "stream (`sent_at`: fsync + building the snapshot; these changes are lone, "
                   "so the debouncer's leading edge pushes them without waiting); "
                   "*push -> last ACK* = the fan-out: writing to every stream, every proxy "
                   "parsing, validating and applying the snapshot, and its ACK; *CPU per change* "
                   "= utime+stime over the cell / changes (one proxy: the mean over the proxies; "
                   "the control plane's includes the state write and answering this script's "
                   "`GET /v1/nodes` polls). With every proxy on this one machine, the fan-out is "
                   "about proxies x proxy CPU / cores.")
        spreads = ", ".join(
            f"{c.proxies} x {fmt_n(c.endpoints)}: {fmt_ms(percentile(c.send_spread_ms, 50))} / "
            f"{fmt_ms(max(c.send_spread_ms))} ms" for c in cells if c.proxies > 1 and c.send_spread_ms)
        if spreads:
            out.append("")
            out.append(f"The control plane's own fan-out, first to last stream written (`sent_at`, "
                       f"p50 / max): {spreads}. The rest of *push -> last ACK* is the proxies' "
                       f"work: on separate hosts (a real mesh) every proxy would see about the "
                       f"1-proxy figure.")
        target = [c for c in cells if c.proxies == 50 and c.endpoints == 1000]
        if target and target[0].samples_ms:
            p99 = percentile(target[0].samples_ms, 99)
            out.append("")
            out.append(f"Target (issue 4): p99 under 100 ms at 50 proxies and 1,000 endpoints: "
                       f"**{fmt_ms(p99)} ms, {'met' if p99 < 100 else 'MISSED'}**.")
        skipped = sum(c.skipped for c in cells)
        if skipped:
            out.append(f"\n{skipped} change(s) skipped: another version was ACKed meanwhile.")
    if hb is not None:
        out.append("")
        out.append("## Heartbeats: control-plane CPU and memory")
        out.append("")
        out.append(f"{fmt_n(hb.instances)} instances (ttl 30s), each `PUT .../heartbeat` every "
                   f"{hb.period_s:g} s, spread evenly, from an asyncio generator on "
                   f"{args.hb_conns} keep-alive connections; {hb.proxies} proxies connected. "
                   f"CPU = utime+stime of remora-control over {hb.window_s:g} s after a "
                   f"{hb.period_s:g} s warm-up.")
        out.append("")
        out.append("| instances | heartbeats/s | control-plane CPU (% of one core) | per "
                   f"{SUBWINDOW_S:g} s slice: min / median / max | idle CPU | "
                   "RSS before -> after (peak) | heartbeat latency p50 / p99 | generator: late p99, CPU |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        sl = hb.slices_pct
        slices = (f"{min(sl):.1f} / {percentile(sl, 50):.1f} / {max(sl):.1f}%" if sl else "-")
        out.append(f"| {fmt_n(hb.instances)} | {hb.rate:,.0f} | **{hb.cpu_pct:.2f}%** | {slices} | "
                   f"{hb.idle_cpu_pct:.2f}% | {fmt_mib(hb.rss_before_kib)} -> {fmt_mib(hb.rss_kib)} "
                   f"({fmt_mib(hb.hwm_kib)}) | {hb.lat_p50_ms:.2f} / {hb.lat_p99_ms:.2f} ms | "
                   f"{hb.late_p99_ms:.1f} ms, {hb.gen_cpu_pct:.0f}% |")
        out.append("")
        out.append(f"Registration of the {fmt_n(hb.instances)} instances took {hb.register_s:.1f} s "
                   f"({REGISTER_CONCURRENCY} concurrent clients, group-committed fsyncs). Failed heartbeats: "
                   f"{hb.failures}; state versions during the window: {hb.versions_changed} "
                   f"(0 = no instance lapsed).")
        if hb.instances == 10000 and hb.cpu_pct is not None:
            out.append("")
            out.append(f"Target (issue 4): 10,000 heartbeating instances under 5% of one core: "
                       f"**{hb.cpu_pct:.2f}%, {'met' if hb.cpu_pct < 5 else 'MISSED'}**.")
    if errors:
        out.append("")
        out.append("## ERRORS")
        out.append("")
        for e in errors:
            out.append(f"- {e}")
    md = "\n".join(out)
    return md, md


# -------------------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    try:
        vals = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list {text!r} (use e.g. 1,10,50)") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"bad list {text!r} (positive numbers)")
    return vals


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="remora-control: propagation time (registry change -> last proxy ACK) and "
                    "heartbeat CPU/memory. See perf/README.md.")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~1 min): 1,10 proxies x 100,1000 endpoints, 10 changes; "
                        "2,000 heartbeating instances for 10 s")
    p.add_argument("--build-dir", default="build",
                   help="where remora and remora-control are (default build/, relative to the repo)")
    p.add_argument("--proxies", type=int_list, help="proxy counts (default 1,10,50)")
    p.add_argument("--endpoints", type=int_list, help="registry sizes (default 100,1000,10000)")
    p.add_argument("--changes", type=int, help="changes per cell (default 50)")
    p.add_argument("--gap-ms", type=int, default=100,
                   help="pause after a change is ACKed everywhere, jittered +-25%% (default 100, "
                        "twice the debounce: every change is a lone one, pushed at once)")
    p.add_argument("--poll-ms", type=float, default=10,
                   help="GET /v1/nodes interval while waiting for the ACKs (default 10); only "
                        "decides when the next change goes, not the measured time")
    p.add_argument("--hb-instances", type=int, help="heartbeating instances (default 10000)")
    p.add_argument("--hb-period", type=float, default=10.0, help="heartbeat period, s (default 10)")
    p.add_argument("--hb-window", type=float, help="measured seconds (default 60)")
    p.add_argument("--hb-idle", type=float, help="idle reference seconds (default 5)")
    p.add_argument("--hb-conns", type=int, default=50, help="generator connections (default 50)")
    p.add_argument("--hb-proxies", type=int, default=5,
                   help="proxies connected during the heartbeat run (default 5)")
    p.add_argument("--debounce", default=DEFAULT_DEBOUNCE,
                   help=f"remora-control discovery.debounce (default {DEFAULT_DEBOUNCE}, its own "
                        f"default): the quiet period before a push, part of every figure")
    p.add_argument("--max-delay", default=DEFAULT_MAX_DELAY,
                   help=f"remora-control discovery.max_delay (default {DEFAULT_MAX_DELAY})")
    p.add_argument("--no-state-file", dest="persist", action="store_false",
                   help="run remora-control memory-only (no fsync before a push)")
    p.add_argument("--skip-propagation", action="store_true")
    p.add_argument("--skip-heartbeats", action="store_true")
    p.add_argument("--output", default=str(RESULTS_DIR / "control-latest.md"),
                   help="Markdown report (default perf/results/control-latest.md; raw samples "
                        "go next to it as .json)")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs, state files and logs")
    a = p.parse_args(argv)
    quick = a.quick
    a.proxies = a.proxies or ([1, 10] if quick else [1, 10, 50])
    a.endpoints = a.endpoints or ([100, 1000] if quick else [100, 1000, 10000])
    a.changes = a.changes or (10 if quick else 50)
    a.hb_instances = a.hb_instances or (2000 if quick else 10000)
    a.hb_window = a.hb_window or (10.0 if quick else 60.0)
    a.hb_idle = a.hb_idle or (2.0 if quick else 5.0)
    if a.changes < 1 or a.hb_conns < 1 or a.hb_period <= 0:
        p.error("--changes, --hb-conns and --hb-period must be positive")
    return a


def on_signal(signum, _frame):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = _dt.datetime.now().astimezone()
    load_start = loadavg()
    cmdline = shlex.join(["python3", "perf/bench_control.py", *argv])
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    build = Path(args.build_dir)
    if not build.is_absolute():
        build = REPO / build
    tmp: Path | None = None
    rc = 2
    try:
        for b in ("remora", "remora-control"):
            if not os.access(build / b, os.X_OK):
                raise SetupError(f"{build / b} not found: run `make build` first (or pass "
                                 f"--build-dir DIR)")
        # The script holds the generator's connections and, via /v1/nodes, nothing more; the
        # control plane and proxies inherit the limit (50 streams + 64 registration clients).
        raise_nofile(4096)
        tmp = Path(tempfile.mkdtemp(prefix="remora-bench-control-"))
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "?"
        if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout.strip():
            rev += " + uncommitted changes"
        log(f"bench-control: temp dir {tmp}; load average {load_start}")
        if float(load_start.split()[0]) > 1.0:
            log(f"WARNING: 1-min load average is {load_start} before the start: other work on "
                f"this machine will skew the numbers")
        errors: list[str] = []
        cells: list[Cell] = []
        hb = None
        if not args.skip_propagation:
            log(f"propagation: proxies {args.proxies} x endpoints {args.endpoints}, "
                f"{args.changes} changes per cell")
            cells = run_propagation(args, build, tmp, errors)
        if not args.skip_heartbeats:
            log(f"heartbeats: {fmt_n(args.hb_instances)} instances every {args.hb_period:g} s")
            hb = run_heartbeats(args, build, tmp, errors)
        console, md = build_report(args, cells, hb, errors, started, cmdline, load_start, rev)
        log("")
        log(console)
        out_path = Path(args.output)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(md + "\n")
        raw = {"date": started.isoformat(), "command": cmdline,
               "cells": [c.__dict__ for c in cells],
               "heartbeats": hb.__dict__ if hb else None, "errors": errors}
        out_path.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
        log(f"\nMarkdown: {out_path}")
        rc = 1 if errors else 0
        return rc
    except SetupError as e:
        log(f"bench-control: error: {e}")
        rc = 2
        return rc
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"\nbench-control: interrupted ({str(e) or 'Ctrl-C'}); stopping processes")
        rc = 130
        return rc
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(list(_procs))
        if tmp is not None:
            if args.keep_tmp or rc not in (0, 130):
                log(f"configs, state files and logs kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
