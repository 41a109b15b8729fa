"""A run's page, ours against the original's: this dashboard (Litestar) and its
predecessor (FastAPI) serving `GET /workflows/{run_id}` for the same runs.

    python -m bench.versus --original-src SRC --original-python VENV/bin/python \\
        --ours-db sqlite:///OURS.db --original-db ORIGINAL.db \\
        [--ours-tree PATH] [--rounds 3] [--requests 1000] [--port 8301] [--prepare]

The original is a checkout of thatAverageGuy/configurable-agents at e95f65d (SRC, the
folder holding its pyproject.toml and src/), served by its own code for this page: its
`create_dashboard_app`, the `workflow_detail` route, the repository's `get` (a sync
SQLAlchemy query in an async handler) and `workflow_detail.html`. Five of its modules
pull in gradio, langgraph, mlflow and the optimizer at import time while no part of the
page needs them (the chat UI, the run executor, the optimizer); a launcher this script
writes to a temporary folder serves tiny stubs under those five names and checks that
every module on the page's path is the checkout's own. Getting it ready, once:

    git clone https://github.com/thatAverageGuy/configurable-agents SRC
    git -C SRC checkout e95f65d
    python3.11 -m venv VENV
    VENV/bin/pip install fastapi==0.163.2 starlette==0.52.1 sqlalchemy==2.0.58 \\
        jinja2==3.1.6 pydantic==2.14.4 pyyaml==6.0.4 httpx==0.28.1 \\
        uvicorn==0.54.0 uvloop==0.23.0 httptools==0.9.0
    DATABASE_URL=sqlite:///OURS.db python -m bench.seed --runs 10000
    python -m bench.versus ... --prepare      # copies those runs into ORIGINAL.db

(Starlette 1.0 dropped the `TemplateResponse(name, context)` the original calls: the
last Starlette before it, and the newest FastAPI that takes it.) `--prepare` creates
the original's tables with its own metadata and copies every run: ids, names, statuses,
times (duration = completed - started), inputs, outputs, config snapshot, error message,
tokens and cost; then it stops. Ours' steps, error type and node have no column there,
and the original's page shows no steps (its app sets no state repository).

A measurement starts both servers (uvicorn, uvloop, httptools, one worker, no access
log): ours from `--ours-tree` (default this tree; an exported older commit or a git
worktree works, with its cwd and PYTHONPATH) on port P, the original with its venv on
P + 1. It samples run ids with a fixed seed: `--ids` to cycle (`kept`: ours keeps a
finished run's page once drawn) and `--drawn-ids` others, a different one for each
request (`drawn`: far more than ours keeps, so every page is drawn). It checks that
each of the first answers 200 on both with its id and workflow name in the page, warms
both up, then for `--rounds` rounds measures each set at concurrency 1 and 10,
`--requests` GETs each (Accept text/html, identity encoding), ours and the original in
turn (which goes first flips every round). Per round and as the median [min..max] of the
rounds: req/s, p50 ms, ours' own time (Server-Timing) p50, each server's CPU per answer,
the mean response body and ours ÷ original req/s, taken within a round so that the
machine's drift cancels. The load comes from bench.load's httpx client, or with
`--wrk SECONDS` from wrk (Debian's `wrk`), which needs so little CPU that at
concurrency 10 the servers, not the load generator, are the limit on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.load import ROOT, Request, Server, drive
from bench.run import git_commit, server_env

ORIGINAL_COMMIT = "e95f65d"
CONCURRENCIES = (1, 10)
# Both servers: the C event loop and HTTP parser, no access log.
UVICORN = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")
HEADERS = {"Accept": "text/html"}

# The original's modules that import heavy things the run page does not use, and what
# stands in for them: only the names the dashboard's modules import from them.
STUBS = {
    "configurable_agents/ui/gradio_chat.py": (
        "CONFIG_GENERATION_PROMPT = ''\n\n\nclass GradioChatUI:\n    pass\n\n\n"
        "def create_gradio_chat_ui(*args, **kwargs):\n    raise NotImplementedError\n"
    ),
    "configurable_agents/runtime/__init__.py": "",
    "configurable_agents/runtime/executor.py": (
        "async def run_workflow_async(*args, **kwargs):\n    raise NotImplementedError\n"
    ),
    "configurable_agents/optimization/__init__.py": (
        "class ExperimentEvaluator:\n    pass\n\n\n"
        "def find_best_variant(*args, **kwargs):\n    raise NotImplementedError\n"
    ),
    "configurable_agents/optimization/ab_test.py": (
        "def apply_prompt_to_workflow(*args, **kwargs):\n    raise NotImplementedError\n"
    ),
}


LAUNCHER = '''"""The original dashboard on ORIGINAL_DB_URL, by its own create_dashboard_app:
    uvicorn versus_original:create_app --factory
with the stubs in ./stubs standing in for the modules of their paths."""

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each file under ./stubs stands in for the module of its path.
STUBBED = {
    ".".join(path.relative_to(HERE / "stubs").with_suffix("").parts).removesuffix(".__init__")
    for path in (HERE / "stubs").rglob("*.py")
}
# The run page's own code: it must come from the checkout, never from a stub.
PAGE_PATH = (
    "configurable_agents.ui.dashboard.app",
    "configurable_agents.ui.dashboard.routes.workflows",
    "configurable_agents.storage.sqlite",
    "configurable_agents.storage.models",
)


class Stubs(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in STUBBED:
            return None
        base = HERE / "stubs" / name.replace(".", "/")
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(
                name, base / "__init__.py", submodule_search_locations=[str(base)]
            )
        return importlib.util.spec_from_file_location(name, base.with_suffix(".py"))


def install():
    if not any(isinstance(finder, Stubs) for finder in sys.meta_path):
        sys.meta_path.insert(0, Stubs())


def create_app():
    install()
    from configurable_agents.ui.dashboard.app import create_dashboard_app

    dashboard = create_dashboard_app(os.environ["ORIGINAL_DB_URL"])
    src = Path(os.environ["ORIGINAL_SRC"]).resolve()
    for name in PAGE_PATH:
        if src not in Path(sys.modules[name].__file__).resolve().parents:
            raise RuntimeError(f"{name} does not come from {src}")
    return dashboard.get_app()
'''

COPY = '''"""Copy the runs of ours' SQLite file (argv[1]) into a new database of the original's
schema (argv[2]), created by its own metadata."""

import sqlite3
import sys
from datetime import datetime, timezone

import versus_original

versus_original.install()
from sqlalchemy import create_engine, insert  # noqa: E402

from configurable_agents.storage.models import Base, WorkflowRunRecord  # noqa: E402

COLUMNS = (
    "id, workflow_name, status, config_snapshot, inputs, outputs, error_message, "
    "created_at, started_at, completed_at, total_tokens, total_cost_usd"
)


def naive_utc(text):
    # Ours writes aware UTC text; the original's columns hold naive UTC (utcnow).
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(timezone.utc).replace(tzinfo=None)


rows = []
source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in source.execute(f"SELECT {COLUMNS} FROM workflow_run ORDER BY created_at"):
    run_id, name, status, snapshot, inputs, outputs, error, created, started, completed = row[:10]
    began = naive_utc(started) or naive_utc(created)
    ended = naive_utc(completed)
    rows.append(
        {
            "id": run_id,
            "workflow_name": name,
            "status": status,
            "config_snapshot": snapshot,
            "inputs": inputs,
            "outputs": outputs,
            "error_message": error,
            "started_at": began,
            "completed_at": ended,
            "duration_seconds": (ended - began).total_seconds() if ended else None,
            "total_tokens": row[10],
            "total_cost_usd": row[11],
            "bottleneck_info": None,
        }
    )
source.close()
engine = create_engine(f"sqlite:///{sys.argv[2]}")
Base.metadata.create_all(engine)
with engine.begin() as db:
    db.execute(insert(WorkflowRunRecord), rows)
print(f"copied {len(rows)} runs into {sys.argv[2]}")
'''


def write_original_support(into: Path) -> None:
    """The launcher, the copier and the stubs, in `into`."""
    (into / "versus_original.py").write_text(LAUNCHER)
    (into / "versus_copy.py").write_text(COPY)
    for name, text in STUBS.items():
        path = into / "stubs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def original_env(support: Path, src: Path, db: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join([str(support), str(src / "src")]),
        "ORIGINAL_SRC": str(src),
        "ORIGINAL_DB_URL": f"sqlite:///{db}",
    }


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise SystemExit(f"{url}: a sqlite:/// URL is needed here")
    return Path(url.removeprefix("sqlite:///")).resolve()


def prepare(python: str, src: Path, ours_db: str, original_db: Path) -> None:
    """A fresh `original_db` holding ours' runs, in the original's schema."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{original_db}{suffix}").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="versus-") as tmp:
        write_original_support(Path(tmp))
        env = {**os.environ, **original_env(Path(tmp), src, original_db)}
        subprocess.run(
            [python, "versus_copy.py", str(sqlite_path(ours_db)), str(original_db)],
            cwd=tmp,
            env=env,
            check=True,
        )


# -- the servers ---------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[Server, Server]]:
    tree = args.ours_tree.resolve()
    src = args.original_src.resolve()
    for port in (args.port, args.port + 1):
        if not port_free(port):
            raise SystemExit(f"port {port} is taken: pick others with --port")
    with ExitStack() as stack:
        support = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="versus-")))
        write_original_support(support)
        ours = Server(
            "app.web.app:create_app",
            {**server_env(args.ours_db), "PYTHONPATH": str(tree)},
            tree,
            name="ours",
            port=args.port,
            options=UVICORN,
        )
        original = Server(
            "versus_original:create_app",
            original_env(support, src, args.original_db.resolve()),
            support,
            name="original",
            python=args.original_python,
            port=args.port + 1,
            health="/health",
            options=UVICORN,
        )
        yield stack.enter_context(ours), stack.enter_context(original)


# -- the measurements ----------------------------------------------------------------


def sample_runs(original_db: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (id, workflow name) pairs, the same for a given seed and set of runs."""
    conn = sqlite3.connect(f"file:{original_db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, workflow_name FROM workflow_runs ORDER BY id").fetchall()
    finally:
        conn.close()
    if len(rows) < count:
        raise SystemExit(f"{original_db} holds {len(rows)} runs: run --prepare first")
    return random.Random(seed).sample(rows, count)


def check_pages(server: Server, runs: list[tuple[str, str]]) -> None:
    """Every sampled run's page answers 200 and names the run and its workflow."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for run_id, name in runs:
            page = client.get(f"/workflows/{run_id}", headers=HEADERS)
            if page.status_code != 200 or run_id not in page.text or name not in page.text:
                raise SystemExit(f"{server.name}: /workflows/{run_id} gave {page.status_code}")


def measure(server: Server, requests: list[Request], concurrency: int, n: int) -> dict[str, Any]:
    sizes: list[int] = []

    def note(_: Request, response: httpx.Response) -> None:
        sizes.append(len(response.content))

    cpu_before = server.cpu_seconds()
    stats = asyncio.run(
        drive(
            server.url,
            requests,
            concurrency=concurrency,
            max_requests=n,
            max_seconds=300,
            warmup=2 * concurrency,
            on_response=note,
            encoding="identity",
        )
    )
    cpu = server.cpu_seconds() - cpu_before
    got = stats.as_dict()
    if stats.errors or set(got["status_codes"]) != {"200"} or stats.requests < n:
        raise SystemExit(f"{server.name} at c{concurrency}: {got}")
    return {
        "rps": got["rps"],
        "p50_ms": got["p50_ms"],
        "p99_ms": got["p99_ms"],
        "server_p50_ms": got["server_p50_ms"],
        # The server process's CPU (all its threads) per answer, warm-up included.
        "cpu_ms": round(cpu * 1000 / len(sizes), 3),
        # Near 1.0: the load generator, not the server, was the limit.
        "client_cpu": round(stats.client_cpu, 2),
        "bytes": round(statistics.fmean(sizes)),
    }


# wrk's script: each request takes the next path, with the same headers as httpx sends.
WRK_SCRIPT = """
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i - 1) % #paths + 1],
    {["Accept"] = "text/html", ["Accept-Encoding"] = "identity"})
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def measure_wrk(
    server: Server, requests: list[Request], concurrency: int, seconds: int
) -> dict[str, Any]:
    """The same measurement by wrk (C, one thread): a load generator that needs far less
    CPU than the servers, so that at concurrency 10 they, not it, are the limit."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f"paths = {{{', '.join(json.dumps(r.path) for r in requests)}}}\n")
        script.write(WRK_SCRIPT)
        script.flush()
        cpu_before = server.cpu_seconds()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                server.url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = server.cpu_seconds() - cpu_before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run.stdout
    answered = int(_found(r"(\d+) requests in", out))
    if "Non-2xx" in out or "Socket errors" in out or not answered:
        raise SystemExit(f"{server.name} at c{concurrency} (wrk):\n{out}")
    latency = {
        q: float(v) * _UNITS[u] for q, v, u in re.findall(r"(50|99)%\s+([\d.]+)(us|ms|s)", out)
    }
    wrk_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    with httpx.Client(base_url=server.url, headers={"Accept-Encoding": "identity"}) as client:
        size = len(client.get(requests[0].path, headers=HEADERS).content)
    return {
        "rps": float(_found(r"Requests/sec:\s+([\d.]+)", out)),
        "p50_ms": round(latency["50"], 3),
        "p99_ms": round(latency["99"], 3),
        "server_p50_ms": None,
        "cpu_ms": round(cpu * 1000 / answered, 3),
        "client_cpu": round(wrk_cpu / seconds, 2),
        "bytes": size,
    }


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise SystemExit(f"wrk's report lacks {pattern!r}:\n{text}")
    return match.group(1)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def fmt(value: dict[str, float] | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value['median']:.{digits}f} [{value['min']:.{digits}f}..{value['max']:.{digits}f}]"


def compare(args: argparse.Namespace) -> dict[str, Any]:
    sample = sample_runs(args.original_db.resolve(), args.ids + args.drawn_ids, args.seed)
    patterns = {
        # A few runs over and over, as operators go back to the runs they work on:
        # ours draws a finished run's page once and keeps it (app/web/pages.py).
        "kept": [Request("GET", f"/workflows/{r}", HEADERS) for r, _ in sample[: args.ids]],
        # A different run every time, far more than ours keeps: every page drawn.
        "drawn": [Request("GET", f"/workflows/{r}", HEADERS) for r, _ in sample[args.ids :]],
    }
    rounds: list[dict[str, Any]] = []
    with servers(args) as (ours, original):
        for server in (ours, original):
            check_pages(server, sample[: args.ids])
            for concurrency in CONCURRENCIES:  # warm: both connections, caches, templates
                requests = patterns["kept"]
                measure(server, requests, concurrency, min(2 * len(requests), 2000))
        for number in range(args.rounds):
            order = (ours, original) if number % 2 == 0 else (original, ours)
            found: dict[str, Any] = {}
            for pattern, requests in patterns.items():
                for concurrency in CONCURRENCIES:
                    got = {s.name: args.measure(s, requests, concurrency) for s in order}
                    got["ratio"] = round(got["ours"]["rps"] / got["original"]["rps"], 3)
                    found[f"{pattern} c{concurrency}"] = got
                    print(
                        f"round {number + 1} {pattern} c{concurrency}: ours "
                        f"{got['ours']['rps']} req/s, p50 {got['ours']['p50_ms']} ms (app "
                        f"{got['ours']['server_p50_ms']}, CPU {got['ours']['cpu_ms']}); "
                        f"original {got['original']['rps']} req/s, p50 "
                        f"{got['original']['p50_ms']} ms (CPU {got['original']['cpu_ms']}); "
                        f"ours/original {got['ratio']}",
                        flush=True,
                    )
            rounds.append(found)
    summary: dict[str, Any] = {}
    for key in rounds[0]:
        row: dict[str, Any] = {"ratio": spread([r[key]["ratio"] for r in rounds])}
        for side in ("ours", "original"):
            for metric in (
                "rps",
                "p50_ms",
                "p99_ms",
                "server_p50_ms",
                "cpu_ms",
                "client_cpu",
                "bytes",
            ):
                values = [r[key][side][metric] for r in rounds]
                row[f"{side}_{metric}"] = None if None in values else spread(values)
        summary[key] = row
    return {
        "ours_commit": os.environ.get("BENCH_COMMIT") or commit_of(args.ours_tree),
        "original_commit": ORIGINAL_COMMIT,
        "kept_runs": args.ids,
        "drawn_runs": args.drawn_ids,
        "seed": args.seed,
        "rounds": args.rounds,
        "requests": args.requests,
        "load": f"wrk for {args.wrk} s" if args.wrk else f"httpx, {args.requests} requests",
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "per_round": rounds,
        "summary": summary,
    }


def commit_of(tree: Path) -> str | None:
    if tree.resolve() == ROOT:
        return git_commit()
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    )
    return out.stdout.strip() or None


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# A run's page: ours ({report['ours_commit']}) against the original "
        f"({report['original_commit']})",
        "",
        f"GET /workflows/{{id}}, identity encoding, {report['load']} per measurement, "
        f"{report['rounds']} rounds; median [min..max] of the rounds. `kept`: "
        f"{report['kept_runs']} runs cycled; `drawn`: {report['drawn_runs']} runs, a "
        "different one each time. CPU: the server process's, per answer; client CPU: the "
        "load generator's share of a core (near 1.0, it was the limit).",
        "",
        "| runs, concurrency | ours req/s | original req/s | ours ÷ original | ours p50 ms "
        "| original p50 ms | ours app p50 ms | ours CPU ms | original CPU ms "
        "| client CPU (ours / original) | ours bytes | original bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in report["summary"].items():
        cells = [
            key,
            fmt(row["ours_rps"]),
            fmt(row["original_rps"]),
            fmt(row["ratio"], 2),
            fmt(row["ours_p50_ms"], 2),
            fmt(row["original_p50_ms"], 2),
            fmt(row["ours_server_p50_ms"], 2),
            fmt(row["ours_cpu_ms"], 3),
            fmt(row["original_cpu_ms"], 3),
            f"{row['ours_client_cpu']['median']:.2f} / {row['original_client_cpu']['median']:.2f}",
            fmt(row["ours_bytes"], 0),
            fmt(row["original_bytes"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--original-src", type=Path, required=True, help="checkout at e95f65d")
    parser.add_argument("--original-python", required=True, help="its venv's python")
    parser.add_argument("--ours-db", required=True, help="ours' database URL")
    parser.add_argument("--original-db", type=Path, required=True, help="its SQLite file")
    parser.add_argument("--ours-tree", type=Path, default=ROOT, help="default: this tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per measurement")
    parser.add_argument("--ids", type=int, default=50, help="runs cycled (`kept`)")
    parser.add_argument(
        "--drawn-ids", type=int, default=5000, help="runs each asked for once (`drawn`)"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the sample")
    parser.add_argument(
        "--wrk",
        type=int,
        metavar="SECONDS",
        help="load with wrk for this long per measurement instead of httpx (apt install wrk)",
    )
    parser.add_argument("--port", type=int, default=8301, help="ours; the original: +1")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--prepare", action="store_true", help="copy ours' runs into --original-db, then stop"
    )
    args = parser.parse_args()
    if args.prepare:
        prepare(
            args.original_python,
            args.original_src.resolve(),
            args.ours_db,
            args.original_db.resolve(),
        )
        return None
    if args.wrk:
        args.measure = lambda s, reqs, c: measure_wrk(s, reqs, c, args.wrk)
    else:
        args.measure = lambda s, reqs, c: measure(s, reqs, c, args.requests)
    report = compare(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
