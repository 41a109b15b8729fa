"""Live pages under load: one Server-Sent Events stream per tab, one change feed per process.

    make bench-live                              # both databases, about 6 minutes
    python -m bench.live --databases sqlite --quick

For each database: seed 5,000 finished runs and 50 running ones (a SQLite file, or a
throwaway PostgreSQL database `ca_bench_<random>` dropped at the end), start the real
server (uvicorn, one worker; with CA_STALE_AFTER_SECONDS high, as bench.run does, so that
it leaves the ownerless running runs alone) and open tabs as a browser does: load the list
page of the running runs, then follow the SSE stream it names. Then measure:

1. idle: server CPU with 0 and with 100 open tabs and no writes;
2. writes: database work and server CPU with 1 tab and with 100 tabs while this process
   updates every running run once a second (50 writes/s), as executors would;
3. latency: with 10 tabs, from a write here to each tab receiving the row with it;
4. shutdown: SIGTERM with 100 open streams, until the process exits.

Each CPU and database figure is measured 3 times. Results go to
bench/results/live-<time>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bench.load import Server, percentile
from bench.run import (
    PG_ADMIN_URL,
    RESULTS,
    child,
    database,
    database_kinds,
    git_commit,
    hardware,
    server_env,
)

FINISHED = 5000
RUNNING = 50
MANY = 100
SSE = {"Accept": "text/event-stream"}
# Litestar ends every SSE message with an empty CRLF line.
EVENT_END = b"\r\n\r\n"
ROW = b'<hx-partial hx-target="#run-'
PROBE = re.compile(rb"probe-(\d{5})")
NODES = ("research", "draft", "review")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    write_seconds: float  # each window with the writer on, per tab count
    idle_base_seconds: float  # each window with no tab open
    idle_seconds: float  # each window with 100 idle tabs
    changes: int  # latency probes, 200 ms apart


FULL = Plan(write_seconds=10, idle_base_seconds=5, idle_seconds=10, changes=100)
QUICK = Plan(write_seconds=5, idle_base_seconds=2, idle_seconds=5, changes=30)
REPEATS = 3


# -- the database, from this process ------------------------------------------------------


class Db:
    """This process's own connections to the bench database: it writes runs' progress as
    executors in other processes would, and reads PostgreSQL's transaction counters."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite:///")
        self.name = url.rsplit("/", 1)[1]
        self.conn: Any = None
        self.admin: Any = None

    async def __aenter__(self) -> Db:
        if self.sqlite:
            self.conn = sqlite3.connect(
                self.url.removeprefix("sqlite:///"),
                isolation_level=None,
                check_same_thread=False,
                timeout=10,
            )
        else:
            import asyncpg

            self.conn = await asyncpg.connect(self.url)
            # Counters are read from another database, so that reading them is not counted.
            self.admin = await asyncpg.connect(PG_ADMIN_URL)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sqlite:
            self.conn.close()
        else:
            await self.conn.close()
            await self.admin.close()

    async def _sqlite(self, sql: str, *params: Any) -> list[Any]:
        return await asyncio.to_thread(lambda: self.conn.execute(sql, params).fetchall())

    async def keep_running(self, count: int) -> list[str]:
        """Leave the `count` newest running runs running and cancel the other seeded ones."""
        newest = "SELECT id FROM workflow_run WHERE status = 'running' ORDER BY created_at DESC"
        cancel = (
            "UPDATE workflow_run SET status = 'cancelled', completed_at = heartbeat_at,"
            " current_node = NULL, error_type = 'Cancelled',"
            " error_message = 'cancelled by an operator' WHERE status = 'running' AND "
        )
        if self.sqlite:
            ids = [r[0] for r in await self._sqlite(newest)][:count]
            await self._sqlite(cancel + f"id NOT IN ({','.join('?' * len(ids))})", *ids)
        else:
            ids = [str(r[0]) for r in await self.conn.fetch(newest)][:count]
            await self.conn.execute(cancel + "id <> ALL($1::uuid[])", ids)
        if len(ids) < count:
            raise RuntimeError(f"the seed made {len(ids)} running runs, fewer than {count}")
        return ids

    async def progress(self, run_id: str, done: int, node: str) -> None:
        if self.sqlite:
            await self._sqlite(
                "UPDATE workflow_run SET steps_done = ?, current_node = ? WHERE id = ?",
                done,
                node,
                run_id,
            )
            return
        # One simple-protocol string (so no parameters): one transaction, and its count
        # reaches pg_stat_database at once instead of up to a second later, so that the
        # server's own count is the database's total minus the writes made here.
        await self.conn.execute(
            "SELECT pg_stat_force_next_flush();"
            f" UPDATE workflow_run SET steps_done = {int(done)}, current_node = '{node}'"
            f" WHERE id = '{run_id}'"
        )

    async def xacts(self) -> int | None:
        """Transactions committed and rolled back in the bench database (PostgreSQL)."""
        if self.sqlite:
            return None
        return int(
            await self.admin.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.name,
            )
        )

    async def calibrate(self, ids: list[str], writes: int = 20) -> dict[str, int]:
        """With no server running: how many transactions `writes` writes count as."""
        await self.conn.execute("SELECT pg_stat_force_next_flush()")  # what came before
        await asyncio.sleep(0.2)
        before = await self.xacts()
        for i in range(writes):
            await self.progress(ids[i % len(ids)], 0, NODES[0])
        await asyncio.sleep(0.5)
        after = await self.xacts()
        assert before is not None and after is not None
        return {"writes": writes, "xacts_counted": after - before}


class Writer:
    """Updates each running run's progress once a second, spread over the second."""

    def __init__(self, db: Db, ids: list[str]):
        self.db = db
        self.ids = ids
        self.count = 0
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        rate = len(self.ids)
        while not self.stopping:
            await asyncio.sleep(max(0.0, began + self.count / rate - loop.time()))
            second, i = divmod(self.count, len(self.ids))
            await self.db.progress(self.ids[i], second % 3, NODES[second % 3])
            self.count += 1

    async def __aenter__(self) -> Writer:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A flag rather than a cancel: a write cut off mid-statement would leave the
        # connection busy for the next phase.
        self.stopping = True
        assert self.task is not None
        await self.task


# -- tabs ----------------------------------------------------------------------------------


@dataclass
class Probe:
    """Latency probes: each write puts `probe-<k>` in a run's current node."""

    sent: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class Tab:
    """One browser tab's stream. Messages are split on the raw bytes rather than read line
    by line: a row is dozens of lines, and 100 tabs at 50 rows/s would have this process
    compete with the server for the machine's CPU."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.messages = 0
        self.rows = 0
        self.keep_alives = 0
        self.seen: set[int] = set()
        self.ended: str | None = None
        self.ended_at: float | None = None
        self.encoding: str | None = None

    async def follow(self, client: httpx.AsyncClient, path: str, probe: Probe | None) -> None:
        try:
            async with client.stream("GET", path, headers=SSE) as response:
                if response.status_code != 200:
                    self.ended = f"HTTP {response.status_code}"
                    return
                self.encoding = response.headers.get("content-encoding", "identity")
                buffer = b""
                async for chunk in response.aiter_bytes():
                    *events, buffer = (buffer + chunk).split(EVENT_END)
                    now = time.perf_counter()
                    for event in events:
                        self._take(event, now, probe)
            self.ended = "end"
        except httpx.HTTPError as exc:
            self.ended = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended_at = time.perf_counter()
            self.opened.set()

    def _take(self, event: bytes, now: float, probe: Probe | None) -> None:
        self.opened.set()  # the first message is `: live` with the retry interval
        if event.startswith(b": keep-alive"):
            self.keep_alives += 1
        elif b"data:" in event:
            self.messages += 1
            self.rows += event.count(ROW)
            if probe is not None:
                for match in PROBE.findall(event):
                    k = int(match)
                    if k in probe.sent and k not in self.seen:
                        self.seen.add(k)
                        probe.latencies.append(now - probe.sent[k])


async def events_path(client: httpx.AsyncClient, shown: list[str]) -> str:
    """Load the list page of the running runs, as a tab does; the stream it names."""
    page = await client.get("/workflows", params={"status": "running"})
    page.raise_for_status()
    found = re.search(r'hx-sse:connect="([^"]+)"', page.text)
    if found is None:
        raise RuntimeError("the list page names no live stream")
    path = html.unescape(found.group(1))
    # The page names its runs by short id (the first 8 hex digits).
    ids = parse_qs(urlsplit(path).query)["shown"][0].split(".")
    if sorted(ids) != sorted(run_id[:8] for run_id in shown):
        raise RuntimeError(f"the list page shows {len(ids)} runs, not the {len(shown)} running")
    return path


class Tabs:
    """`count` tabs on a freshly loaded list page, open until the block ends."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        shown: list[str],
        count: int,
        probe: Probe | None = None,
        note: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.shown = shown
        self.tabs = [Tab() for _ in range(count)]
        self.probe = probe
        self.note = note
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Tabs:
        if not self.tabs:
            return self
        path = await events_path(self.client, self.shown)
        self.tasks = [
            asyncio.create_task(t.follow(self.client, path, self.probe)) for t in self.tabs
        ]
        await asyncio.wait_for(asyncio.gather(*(t.opened.wait() for t in self.tabs)), 60)
        failed = self.ended()
        if failed:
            raise RuntimeError(f"{len(failed)} tab(s) could not open their stream: {failed[0]}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.note and self.tasks:
            self.note(f"closing {len(self.tasks)} tab(s)")
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if len(self.tasks) > 1:
            # The server drops them (and logs what it logs about it) before the next phase.
            await asyncio.sleep(0.5)

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.tabs)

    def ended(self) -> list[str]:
        return [t.ended for t in self.tabs if t.ended]


# -- measuring -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Bench:
    server: Server
    db: Db
    client: httpx.AsyncClient
    shown: list[str]
    plan: Plan
    log: Path

    def tabs(self, count: int, probe: Probe | None = None) -> Tabs:
        return Tabs(self.client, self.shown, count, probe, self.note)

    def note(self, text: str, show: bool = False) -> None:
        """A line in the server's log, so that what it logs can be placed in a phase."""
        with self.log.open("a") as f:
            f.write(f"-- bench: {text}\n")
        if show:
            print(f"  {text}", flush=True)


async def window(
    b: Bench, seconds: float, tabs: Tabs, writer: Writer | None = None
) -> dict[str, Any]:
    """What the server does over `seconds`: CPU as % of one core, its transactions per
    second (PostgreSQL, the writes made here taken out), what each tab received."""
    count = max(len(tabs.tabs), 1)
    pid = b.server.pid
    cpu, own, xacts = cpu_seconds(pid), time.process_time(), await b.db.xacts()
    writes = writer.count if writer else 0
    got = {k: tabs.total(k) for k in ("messages", "rows", "keep_alives")}
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    xacts_after = await b.db.xacts()
    took = time.perf_counter() - began
    cpu, own = cpu_seconds(pid) - cpu, time.process_time() - own
    writes = (writer.count if writer else 0) - writes
    server_xacts = None if xacts is None or xacts_after is None else xacts_after - xacts - writes
    per_tab = {k: (tabs.total(k) - v) / count for k, v in got.items()}
    return {
        "seconds": round(took, 2),
        "server_cpu_pct": round(100 * cpu / took, 2),
        "server_xacts_per_s": None if server_xacts is None else round(server_xacts / took, 1),
        "writes_per_s": round(writes / took, 1),
        "messages_per_tab_per_s": round(per_tab["messages"] / took, 1),
        "rows_per_tab_per_s": round(per_tab["rows"] / took, 1),
        "keep_alives_per_tab": round(per_tab["keep_alives"], 2),
        "client_cpu_pct": round(100 * own / took, 1),
        # streams the server ended or cut while they should have stayed open
        "streams_lost": len(tabs.ended()),
    }


def spread(windows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    values = [w[key] for w in windows if w[key] is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(windows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in windows[0] if k != "seconds"]
    return {"windows": windows, **{k: spread(windows, k) for k in keys}}


async def idle(b: Bench) -> dict[str, Any]:
    out = {}
    for count, seconds in ((0, b.plan.idle_base_seconds), (MANY, b.plan.idle_seconds)):
        b.note(f"idle, {count} tabs", show=True)
        async with b.tabs(count) as tabs:
            await asyncio.sleep(1.0)
            # Back to back, so that together they span the keep-alive interval (15 s).
            out[str(count)] = summarise([await window(b, seconds, tabs) for _ in range(REPEATS)])
        print(f"    server CPU {out[str(count)]['server_cpu_pct']}", flush=True)
    return out


async def writes(b: Bench) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], MANY: []}
    async with Writer(b.db, b.shown) as writer:
        # Alternated, so that a neighbour's load on the machine falls on both counts.
        for i in range(REPEATS):
            for count in runs:
                b.note(f"writes, {count} tabs, window {i + 1}", show=True)
                async with b.tabs(count) as tabs:
                    await asyncio.sleep(2.0)  # past the catch-up each new tab asks for
                    w = await window(b, b.plan.write_seconds, tabs, writer)
                runs[count].append(w)
                print(
                    f"    {w['writes_per_s']} writes/s, server CPU {w['server_cpu_pct']} %, "
                    f"xacts/s {w['server_xacts_per_s']}, rows/tab/s {w['rows_per_tab_per_s']}, "
                    f"streams lost {w['streams_lost']}",
                    flush=True,
                )
    out: dict[str, Any] = {str(k): summarise(v) for k, v in runs.items()}
    for key in ("server_xacts_per_s", "server_cpu_pct"):
        pairs = [(x[key], y[key]) for x, y in zip(runs[1], runs[MANY], strict=True)]
        ratios = [round(y / x, 3) for x, y in pairs if x and y is not None]
        one, many = out["1"][key], out[str(MANY)][key]
        out[f"ratio_{key}"] = (
            {
                "of_medians": round(many["median"] / one["median"], 3) if one["median"] else None,
                "min": min(ratios),
                "max": max(ratios),
            }
            if one and many and ratios
            else None
        )
    return out


async def latency(b: Bench, count: int = 10) -> dict[str, Any]:
    b.note(f"latency, {count} tabs", show=True)
    probe = Probe()
    loop = asyncio.get_running_loop()
    async with b.tabs(count, probe) as tabs:
        await asyncio.sleep(1.0)
        began = loop.time()
        for k in range(b.plan.changes):
            await asyncio.sleep(max(0.0, began + 0.2 * k - loop.time()))
            # Taken before the write: the latency includes the write's own commit.
            probe.sent[k] = time.perf_counter()
            await b.db.progress(b.shown[k % len(b.shown)], 1, f"probe-{k:05d}")
        expected = count * b.plan.changes
        deadline = loop.time() + 5
        while len(probe.latencies) < expected and loop.time() < deadline:
            await asyncio.sleep(0.1)
        lost = tabs.ended()
    ms = [1000 * s for s in probe.latencies]
    out = {
        "tabs": count,
        "changes": b.plan.changes,
        "expected": expected,
        "received": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "streams_lost": lost,
    }
    print(f"    {out}", flush=True)
    return out


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


async def shutdown(b: Bench, grace: float) -> dict[str, Any]:
    proc = b.server.proc
    assert proc is not None
    async with b.tabs(MANY) as tabs:
        await asyncio.sleep(0.5)
        lost = tabs.ended()
        b.note(f"SIGTERM with {MANY} tabs", show=True)
        began = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(wait_exit, proc, grace + 15)
        exited = time.perf_counter() - began
        await asyncio.wait(tabs.tasks, timeout=5)
        ends = [t.ended_at - began for t in tabs.tabs if t.ended_at is not None]
        outcome: dict[str, int] = {}
        for t in tabs.tabs:
            outcome[t.ended or "still open"] = outcome.get(t.ended or "still open", 0) + 1
    out = {
        "streams": MANY,
        "streams_lost_before": lost,
        "exit_seconds": round(exited, 3) if code is not None else None,
        # uvicorn re-raises the signal once it has shut down: -15 is a clean exit
        "returncode": code,
        "grace_seconds": grace,
        "streams_ended": outcome.get("end", 0),
        "outcomes": outcome,
        "last_stream_end_seconds": round(max(ends), 3) if ends else None,
    }
    print(f"    {out}", flush=True)
    return out


async def measure(server: Server, url: str, shown: list[str], plan: Plan, log: Path) -> dict:
    from app.settings import Settings

    grace = float(os.environ.get("CA_GRACE_SECONDS") or Settings().grace_seconds)
    limits = httpx.Limits(max_connections=2 * MANY, max_keepalive_connections=2 * MANY)
    timeout = httpx.Timeout(30.0, read=60.0)  # a read outlasts the 15 s keep-alive
    async with (
        Db(url) as db,
        httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as client,
    ):
        b = Bench(server, db, client, shown, plan, log)
        b.note("warm-up, 1 tab", show=True)
        async with b.tabs(1) as warm:  # templates compiled, pool and feed started
            await asyncio.sleep(1.0)
        # httpx asks for gzip as browsers do: each stream has a compressor of its own.
        result: dict[str, Any] = {"stream_encoding": warm.tabs[0].encoding}
        result["idle"] = await idle(b)
        result["writes"] = await writes(b)
        result["latency"] = await latency(b)
        result["shutdown"] = await shutdown(b, grace)
    return result


@contextlib.contextmanager
def stderr_to(path: Path):
    """Point this process's stderr at `path` meanwhile: a child started now logs there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


async def prepare(url: str) -> tuple[list[str], dict[str, int] | None]:
    async with Db(url) as db:
        ids = await db.keep_running(RUNNING)
        return ids, None if db.sqlite else await db.calibrate(ids)


# The last line of a traceback, or a line logged at top level.
LOGGED = re.compile(r"^[\s|]*([\w.]+(?:Error|Exception|Group)\b.*)$|^([A-Za-z].*)$")


def log_summary(lines: list[str]) -> list[str]:
    """Each distinct thing the server logged, how often, in which phase of the bench."""
    counts: dict[tuple[str, str], int] = {}
    phase = "start"
    for line in lines:
        if line.startswith("-- bench: "):
            phase = line.removeprefix("-- bench: ")
            continue
        found = LOGGED.match(line)
        text = found and (found.group(1) or found.group(2))
        if text and not text.startswith(("Traceback", "The above", "During handling", "INFO")):
            counts[(phase, text)] = counts.get((phase, text), 0) + 1
    return [f"{n}x [{phase}] {text}" for (phase, text), n in counts.items()]


def bench_one(kind: str, plan: Plan) -> dict[str, Any]:
    result: dict[str, Any] = {"database": kind}
    with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        print(f"[{kind}] seeding {FINISHED:,} finished and {RUNNING} running runs", flush=True)
        child("bench.seed", "--runs", str(FINISHED + RUNNING), "--database-url", url)
        shown, result["writer_calibration"] = asyncio.run(prepare(url))
        log = Path(tmp) / "server.log"
        try:
            with contextlib.ExitStack() as stack:
                with stderr_to(log):
                    server = stack.enter_context(Server("app.web.app:create_app", server_env(url)))
                result.update(asyncio.run(measure(server, url, shown, plan, log)))
        finally:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            summary = log_summary(lines)
            if summary:
                print(f"[{kind}] the server logged:", *summary, sep="\n  ", file=sys.stderr)
        result["server_log_summary"] = summary
        # the first traceback in full, with what led to it
        result["server_log_head"] = [line for line in lines if not line.startswith("INFO")][:150]
    return result


# -- report ------------------------------------------------------------------------------------


def fmt(s: dict[str, Any] | None, unit: str = "") -> str:
    if not s:
        return "-"
    return f"{s['median']:g}{unit} [{s['min']:g}..{s['max']:g}]"


def targets(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    kind, w, idle, lat, down = r["database"], r["writes"], r["idle"], r["latency"], r["shutdown"]
    rows = []
    x = w["ratio_server_xacts_per_s"]
    cpu = w["ratio_server_cpu_pct"]
    if kind == "postgres":
        ok = x is not None and 0.9 <= x["of_medians"] <= 1.1
        rows.append(
            (
                "server transactions/s, 100 tabs ÷ 1 tab, within ±10% (50 writes/s)",
                f"{fmt(w['1']['server_xacts_per_s'])} → {fmt(w[str(MANY)]['server_xacts_per_s'])}"
                f" xacts/s: {x['of_medians'] if x else '-'}x",
                "yes"
                if ok
                else "**no**" + (" (fewer with 100 tabs)" if x and x["of_medians"] < 1 else ""),
            )
        )
    else:
        rows.append(
            (
                "database statements, 100 tabs ÷ 1 tab, within ±10% (50 writes/s)",
                "not counted on SQLite: the feed polls once per 0.5 s whatever the tabs and "
                f"loads each change once; server CPU {cpu['of_medians'] if cpu else '-'}x",
                "n/a",
            )
        )
    idle_cpu = idle[str(MANY)]["server_cpu_pct"]
    rows.append(
        (
            "server CPU with 100 idle tabs ≤ 5% of a core",
            f"{fmt(idle_cpu, ' %')} (0 tabs: {fmt(idle['0']['server_cpu_pct'], ' %')})",
            "yes" if idle_cpu["median"] <= 5 else "**no**",
        )
    )
    bound = 1000 if kind == "postgres" else 1500
    complete = lat["received"] == lat["expected"]
    rows.append(
        (
            f"change to client p95 ≤ {bound / 1000:g} s",
            f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, max {lat['max_ms']} ms; "
            f"{lat['received']}/{lat['expected']} received",
            "yes" if lat["p95_ms"] <= bound and complete else "**no**",
        )
    )
    exit_s = down["exit_seconds"]
    ok = exit_s is not None and exit_s <= down["grace_seconds"]
    rows.append(
        (
            f"SIGTERM with {MANY} streams: exits within the grace ({down['grace_seconds']:g} s), "
            "every stream ended",
            f"exit in {exit_s} s, {down['streams_ended']}/{MANY} streams ended "
            f"(last at {down['last_stream_end_seconds']} s)",
            "yes" if ok and down["streams_ended"] == MANY else "**no**",
        )
    )
    return rows


def phase_rows(r: dict[str, Any]) -> list[str]:
    out = []
    for phase, key in (("idle", "0"), ("idle", str(MANY)), ("writes", "1"), ("writes", str(MANY))):
        s = r[phase][key]
        out.append(
            f"| {phase} | {key} | {fmt(s['server_cpu_pct'])} | {fmt(s['server_xacts_per_s'])} "
            f"| {fmt(s['writes_per_s'])} | {fmt(s['messages_per_tab_per_s'])} "
            f"| {fmt(s['rows_per_tab_per_s'])} | {fmt(s['keep_alives_per_tab'])} "
            f"| {fmt(s['client_cpu_pct'])} | {fmt(s['streams_lost'])} |\n"
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    hw = report["hardware"]
    out = [
        f"# Live pages benchmark {report['started']}\n\n",
        f"Commit {report['commit']}; {hw['cpu']}, {hw['cores']} cores; Python {hw['python']}, "
        f"SQLite {hw['sqlite']}, PostgreSQL {hw['postgresql']}. Mode: {report['mode']} "
        f"({report['plan']}); {report['seconds']} s in all.\n\n",
        f"{FINISHED:,} finished and {RUNNING} running runs; every tab loads "
        "`/workflows?status=running` (the 50 running runs) and follows the stream it names. "
        f"The writer (this process) updates each running run once a second. Figures are "
        f"median [min..max] of {REPEATS} windows; CPU is utime + stime of the server process "
        "over wall time (% of one core).\n\n"
        "Server transactions/s (PostgreSQL) stand in for statements, as `pg_stat_statements` "
        "needs a server restart to load: the bench database's `xact_commit + xact_rollback` "
        "over the window minus the writer's writes, each one transaction flushed to the "
        "statistics at once (`pg_stat_force_next_flush()`; the calibration below checks it "
        "with no server running). What remains is the server's: each query on its asyncpg "
        "pool is followed by the pool's reset (`SELECT pg_advisory_unlock_all(); CLOSE ALL; "
        "UNLISTEN *; RESET ALL;`), one more transaction, so about two per statement; and its "
        "LISTEN connection spends one transaction per notification it reads (about one per "
        "write), reported when that connection next runs a statement (its check every 5 s), "
        "hence windows of a multiple of 5 s. Pooled connections report theirs up to a second "
        "late, which blurs each window's edges.\n\n",
        "## Targets\n\n| db | target | measured | met |\n|---|---|---|---|\n",
    ]
    for r in report["results"]:
        out += [f"| {r['database']} | {t} | {m} | {ok} |\n" for t, m, ok in targets(r)]
    for r in report["results"]:
        out.append(
            f"\n## {r['database']}\n\nStreams sent with {r['stream_encoding']} encoding.\n\n"
        )
        out.append(
            "| phase | tabs | server CPU % | server xacts/s | writes/s | messages/tab/s "
            "| rows/tab/s | keep-alives/tab | client CPU % | streams lost |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
        )
        out += phase_rows(r)
        w = r["writes"]
        out.append(
            f"\n100 tabs ÷ 1 tab, with writes: server transactions/s "
            f"{json.dumps(w['ratio_server_xacts_per_s'])}, server CPU "
            f"{json.dumps(w['ratio_server_cpu_pct'])}.\n\n"
            f"Latency: {json.dumps(r['latency'])}\n\nShutdown: {json.dumps(r['shutdown'])}\n\n"
        )
        if r.get("writer_calibration"):
            out.append(f"Writer calibration (no server): {json.dumps(r['writer_calibration'])}\n\n")
        log = r["server_log_summary"]
        out.append("Server log (distinct lines, by phase; the JSON has the first traceback)")
        out.append(":\n\n```\n" + "\n".join(log) + "\n```\n" if log else ": nothing.\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="shorter windows, 30 probes")
    args = parser.parse_args()
    kinds = database_kinds(parser, args.databases)
    # A plain `kill` should stop the servers and drop the database too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    plan = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "commit": git_commit(),
        "hardware": hardware(),
        "plan": plan.__dict__,
        "databases": kinds,
        "results": [],
    }
    began = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"live-{started.strftime('%Y%m%d-%H%M%S')}-{report['mode']}"
    text = ""
    for kind in kinds:
        report["results"].append(bench_one(kind, plan))
        report["seconds"] = round(time.perf_counter() - began, 1)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        text = markdown(report)
        stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {stem}.json and .md in {report['seconds']} s")


if __name__ == "__main__":
    main()
