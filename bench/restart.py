"""Restarts at scale, against a baseline commit: what a restart costs its client and how
many a dashboard takes a second.

    python -m bench.restart [--runs 1000000] [--databases sqlite,postgres]
                            [--baseline 710cb83] [--rounds 3]

Each engine gets a throwaway database seeded by bench.seed (a three-node workflow on the
mock provider without delay). Each round starts a server of this tree and one of the
baseline commit (exported with `git archive`), in turn, and restarts distinct failed
runs as a JSON client: 200 at concurrency 1 (the p50 is the answer's time) and 1,000 at
concurrency 10 (requests a second). Embedded mode: the restarted runs execute in the
server meanwhile, and every one is waited for until it ends (lost or stuck ones are
counted). Queue mode (PostgreSQL): the dashboard only queues; one worker then executes
what was queued, and the same count is made. Figures: the median of the rounds with
their spread; ratios to the baseline are taken within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.bulk import seed
from bench.load import ROOT, Server, Worker, restart_each
from bench.overview import export, summary
from bench.run import (
    RESULTS,
    database,
    database_kinds,
    git_commit,
    hardware,
    save,
    server_env,
    statuses,
)

# The commit before a run's progress writes were coalesced.
BASELINE = "710cb83"
C1, C10 = 200, 1000


async def failed_ids(url: str, count: int) -> list[str]:
    """Failed runs never restarted, in random order."""
    sql = (
        "SELECT w.id FROM workflow_run w WHERE w.status = 'failed' AND NOT EXISTS"
        " (SELECT 1 FROM workflow_run r WHERE r.restarted_from = w.id)"
        f" ORDER BY random() LIMIT {count}"
    )
    if url.startswith("sqlite:///"):
        import sqlite3
        import uuid

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [str(uuid.UUID(r[0])) for r in conn.execute(sql)]
        finally:
            conn.close()
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        return [str(r["id"]) for r in await pg.fetch(sql)]
    finally:
        await pg.close()


def ended(url: str, created: list[str], timeout: float) -> dict[str, int]:
    """Wait until none of `created` is pending or running; the count of each status."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(statuses(url, created))
        if time.monotonic() > deadline or not any(
            found.get(i) in ("pending", "running") for i in created
        ):
            break
        time.sleep(0.2)
    outcome: dict[str, int] = {}
    for i in created:
        state = found.get(i, "lost")
        outcome[state] = outcome.get(state, 0) + 1
    return outcome


def measure(url: str, tree: Path, ids: list[str], queue: bool) -> dict[str, Any]:
    env = server_env(url) | ({"EXECUTION": "queue"} if queue else {})
    with Server("app.web.app:create_app", env, cwd=tree) as server:
        one, made_one = restart_each(server.url, ids[:C1], concurrency=1, max_seconds=60)
        ten, made_ten = restart_each(server.url, ids[C1:], concurrency=10, max_seconds=60)
        created = made_one + made_ten
        if queue:
            # The seeded running runs have no owner: the worker must not fail them
            # (a sweep of tens of thousands at 1M) while the restarted runs wait.
            with Worker(url, 4, extra_env=server_env(url)):
                outcome = ended(url, created, 120)
        else:
            outcome = ended(url, created, 120)
    assert not one.errors and not ten.errors, (one.as_dict(), ten.as_dict())
    return {
        "c1_p50_ms": one.as_dict()["p50_ms"],
        "c10_rps": ten.as_dict()["rps"],
        "c10_p50_ms": ten.as_dict()["p50_ms"],
        "created": len(created),
        "outcome": outcome,
        "lost_or_stuck": sum(outcome.get(s, 0) for s in ("pending", "running", "lost")),
    }


def bench_mode(url: str, base_tree: Path, rounds: int, queue: bool) -> dict[str, Any]:
    trees = {"this tree": ROOT, "baseline": base_tree}
    got: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    ratios: dict[str, list[float]] = {"c1_p50_ms": [], "c10_rps": []}
    lost = 0
    for _ in range(rounds):
        ids = asyncio.run(failed_ids(url, 2 * (C1 + C10)))
        assert len(ids) == 2 * (C1 + C10), f"only {len(ids)} failed runs left: seed more runs"
        this_round = {}
        for n, (name, tree) in enumerate(trees.items()):
            part = ids[n * (C1 + C10) : (n + 1) * (C1 + C10)]
            result = this_round[name] = measure(url, tree, part, queue)
            lost += result["lost_or_stuck"]
            for key in ("c1_p50_ms", "c10_rps", "c10_p50_ms"):
                got[name].setdefault(key, []).append(result[key])
        for key in ratios:
            ratios[key].append(this_round["this tree"][key] / this_round["baseline"][key])
    return {
        "figures": {
            name: {key: summary(values) for key, values in keys.items()}
            for name, keys in got.items()
        },
        "ratio_to_baseline": {key: summary(values) for key, values in ratios.items()},
        "lost_or_stuck": lost,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Restarts at {report['runs']:,} runs",
        "",
        f"Commit {report['commit']} against {report['baseline'][:7]},"
        f" {report['hardware'].get('cpu', '')}. JSON restart POSTs of distinct failed runs:"
        f" {C1} at concurrency 1, {C10:,} at concurrency 10. Median of"
        f" {report['rounds']} rounds [min..max]; ratios to the baseline within a round."
        " Targets: p50 ≤ 4 ms, ≥ 300 restarts/s at c10, every restarted run ends.",
        "",
        "| engine, mode | tree | c1 p50 ms | c10 restarts/s | c10 p50 ms |",
        "|---|---|---|---|---|",
    ]

    def cell(s: dict[str, Any]) -> str:
        return f"{s['median']} [{s['spread'][0]}..{s['spread'][1]}]"

    for key, r in report["modes"].items():
        for name, f in r["figures"].items():
            lines.append(
                f"| {key} | {name} | {cell(f['c1_p50_ms'])} | {cell(f['c10_rps'])}"
                f" | {cell(f['c10_p50_ms'])} |"
            )
        q = r["ratio_to_baseline"]
        lines.append(
            f"| {key} | this ÷ baseline | {cell(q['c1_p50_ms'])} | {cell(q['c10_rps'])} | |"
        )
    lines += ["", "Lost or stuck restarted runs:"]
    lines += [f"- {key}: {r['lost_or_stuck']}" for key, r in report["modes"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    kinds = database_kinds(parser, args.databases)
    report: dict[str, Any] = {
        "runs": args.runs,
        "rounds": args.rounds,
        "commit": git_commit(),
        "hardware": hardware(),
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "baseline"
        base_tree.mkdir()
        report["baseline"] = export(args.baseline, base_tree)
        for kind in kinds:
            with database(kind) as url:
                seed(url, args.runs, tmp)
                # The seed wrote gigabytes that the kernel would still be flushing
                # through the first rounds (SQLite at 1M: about 290 restarts a second
                # then, 315 once flushed).
                os.sync()
                modes = [False, True] if kind == "postgres" else [False]
                for queue in modes:
                    key = f"{kind}, {'queue' if queue else 'embedded'}"
                    print(f"[{key}]", flush=True)
                    report["modes"][key] = bench_mode(url, base_tree, args.rounds, queue)
    save(args.out, f"restart-{{stamp}}-{args.runs}", report, markdown(report))


if __name__ == "__main__":
    main()
