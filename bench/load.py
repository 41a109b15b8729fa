"""A small closed-loop load generator over httpx, and uvicorn servers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ROOT", "Request", "Server", "Stats", "Worker", "drive", "percentile"]

ROOT = Path(__file__).resolve().parents[1]
# The app's own time for an answer (app/web/security.py), without the network's.
SERVER_TIMING = re.compile(r"\bapp;dur=([0-9.]+)")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)  # the app's own Server-Timing
    status_codes: dict[int, int] = field(default_factory=dict)
    body_bytes: int = 0
    wire_bytes: int = 0
    content_encoding: str | None = None
    client_cpu: float = 0.0  # the load generator's CPU time over the wall time
    rss_mb: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "requests": self.requests,
            "errors": self.errors,
            "status_codes": {str(k): v for k, v in sorted(self.status_codes.items())},
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(percentile(lat, 0.99), 2) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
            "server_p50_ms": (
                round(statistics.median(self.server_ms), 2) if self.server_ms else None
            ),
            "body_bytes": self.body_bytes,
            "wire_bytes": self.wire_bytes,
            "content_encoding": self.content_encoding,
            "client_cpu": round(self.client_cpu, 2),
            "rss_mb": self.rss_mb,
        }


async def drive(
    base_url: str,
    requests: Sequence[Request],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 5,
    cycle: bool = True,
    on_response: Callable[[Request, httpx.Response], None] | None = None,
    encoding: str = "gzip",
) -> Stats:
    """Send `requests` (round robin when `cycle`, else each once) from `concurrency`
    closed-loop workers over kept-alive connections, until `max_requests` are done or
    `max_seconds` have passed. Asks for gzip, as a browser over plain HTTP does, unless
    `encoding` says otherwise ("identity": the page's own cost, without compression)."""
    stats = Stats()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    total = max_requests if cycle else min(max_requests, len(requests))
    async with httpx.AsyncClient(
        base_url=base_url,
        limits=limits,
        timeout=60,
        headers={"Accept-Encoding": encoding},
    ) as client:
        if warmup and cycle:
            # open the connections and warm the server's caches
            await asyncio.gather(
                *(
                    client.request(r.method, r.path, headers=r.headers)
                    for r in [requests[i % len(requests)] for i in range(max(warmup, concurrency))]
                )
            )
        next_index = 0
        deadline = time.perf_counter() + max_seconds

        async def worker() -> None:
            nonlocal next_index
            while next_index < total and time.perf_counter() < deadline:
                req = requests[next_index % len(requests)]
                next_index += 1
                began = time.perf_counter()
                response = await client.request(req.method, req.path, headers=req.headers)
                body = response.content
                stats.latencies_ms.append((time.perf_counter() - began) * 1000)
                stats.requests += 1
                timing = SERVER_TIMING.search(response.headers.get("server-timing", ""))
                if timing:
                    stats.server_ms.append(float(timing.group(1)))
                stats.status_codes[response.status_code] = (
                    stats.status_codes.get(response.status_code, 0) + 1
                )
                if response.status_code >= 400:
                    stats.errors += 1
                if not stats.body_bytes and response.status_code < 400:
                    stats.body_bytes = len(body)
                    stats.wire_bytes = response.num_bytes_downloaded
                    stats.content_encoding = response.headers.get("content-encoding")
                if on_response is not None:
                    on_response(req, response)

        cpu0 = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stats.seconds = time.perf_counter() - began
        stats.client_cpu = (time.process_time() - cpu0) / stats.seconds if stats.seconds else 0
    return stats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restart_each(
    base_url: str, run_ids: Sequence[str], *, concurrency: int, max_seconds: float
) -> tuple[Stats, list[str]]:
    """POST a restart of each run once (as a JSON client), `concurrency` at a time; the
    stats and the ids of the runs the restarts created."""
    created: list[str] = []

    def keep(_: Request, response: httpx.Response) -> None:
        if response.status_code == 200:
            created.append(response.json()["run_id"])

    requests = [
        Request("POST", f"/workflows/{r}/restart", {"Accept": "application/json"}) for r in run_ids
    ]
    stats = asyncio.run(
        drive(
            base_url,
            requests,
            concurrency=concurrency,
            max_requests=len(requests),
            max_seconds=max_seconds,
            warmup=0,
            cycle=False,
            on_response=keep,
        )
    )
    return stats, created


class Server:
    """`uvicorn <factory> --factory`, one worker, in a subprocess on a loopback port (a
    free one unless given); ready once `health` answers 200. `python` and `options`
    (uvloop, httptools, no access log...) serve another project's app the same way."""

    def __init__(
        self,
        factory: str,
        env: dict[str, str],
        cwd: Path | None = None,
        *,
        name: str | None = None,
        python: str = sys.executable,
        port: int | None = None,
        health: str = "/healthz",
        options: Sequence[str] = (),
    ):
        self.factory = factory
        self.name = name or factory
        # Another tree (an older commit, exported) serves with its own code.
        self.cwd = cwd or ROOT
        self.python = python
        self.port = port or free_port()
        self.health = health
        self.options = list(options)
        self.env = {"CA_ALLOWED_HOSTS": f"127.0.0.1:{self.port}", **env}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "uvicorn",
                self.factory,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                *self.options,
                "--log-level",
                "warning",
            ],
            cwd=self.cwd,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}{self.health}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within 60 s")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User and system CPU of the server process so far, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float | None:
        """VmRSS of the uvicorn process, in MB (None where /proc is missing)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Worker:
    """`configurable-agents worker` in a subprocess (EXECUTION=queue) on `database_url`.

    Start several, then `wait_ready()` each, so that none runs alone while the others
    boot; or use it as a context manager.
    """

    def __init__(
        self, database_url: str, concurrency: int = 4, extra_env: dict[str, str] | None = None
    ):
        import threading

        self.database_url = database_url
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "EXECUTION": "queue",
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._threading = threading

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> Worker:
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "worker ready" not in line:
            self.stop()
            raise RuntimeError(f"the worker did not start: {line}")
        # Keep reading what it logs, so that a full pipe never blocks it.
        stream = self.proc.stderr
        self._threading.Thread(target=lambda: self.log.extend(stream), daemon=True).start()
        return self

    def stop(self) -> None:
        """SIGTERM: the worker finishes what it runs (30 s grace), then exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
