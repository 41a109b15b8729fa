"""The overview at scale: what the counts, the "needs attention" view and /metrics cost
the pages an operator opens, against the dashboard as it was before them.

    python -m bench.overview [--runs 1000000] [--databases sqlite,postgres]
                             [--baseline 42ef438] [--rounds 3] [--seconds 4]

Each engine gets a throwaway database seeded by bench.seed. Two servers answer from it
side by side: this tree, and the baseline commit exported with `git archive` (by default
the last commit before the counts). Each round measures, at concurrency 1 and
alternating between the servers, the table partial and the list page on both, and on
this tree the "needs attention" partial and /metrics. Figures are the median of the
round medians with the spread of the rounds; ratios are taken within a round, so the
machine's drift cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.bulk import seed
from bench.load import ROOT, Request, Server, drive
from bench.run import (
    HX,
    RESULTS,
    database,
    database_kinds,
    git_commit,
    hardware,
    save,
    server_env,
)

# The commit before the filter bar's counts: "today's" list, for the 10% target.
BASELINE = "42ef438"
PAGES = {
    "table partial": Request("GET", "/workflows/table", HX),
    "list page": Request("GET", "/workflows"),
}
NEW_ONLY = {
    "needs attention partial": Request("GET", "/workflows/table?status=attention", HX),
    "metrics": Request("GET", "/metrics"),
}


def export(rev: str, into: Path) -> str:
    """The tree of `rev` in `into`; its full commit id."""
    full = subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", full], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return full


def timed(server: Server, request: Request, seconds: float) -> dict[str, Any]:
    stats = asyncio.run(
        drive(server.url, [request], concurrency=1, max_requests=100_000, max_seconds=seconds)
    )
    out = stats.as_dict()
    assert not stats.errors and set(stats.status_codes) == {200}, out
    return {"rps": out["rps"], "p50_ms": out["p50_ms"]}


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "spread": [round(min(values), 3), round(max(values), 3)],
    }


def bench_engine(url: str, base_tree: Path, rounds: int, seconds: float) -> dict[str, Any]:
    env = server_env(url)
    rows: dict[str, dict[str, list[float]]] = {}

    def note(name: str, key: str, value: float) -> None:
        rows.setdefault(name, {}).setdefault(key, []).append(value)

    with (
        Server("app.web.app:create_app", env) as now,
        Server("app.web.app:create_app", env, cwd=base_tree) as before,
    ):
        for server in (now, before):  # warm: plans, caches, the first page's templates
            for request in PAGES.values():
                timed(server, request, 0.5)
        for _ in range(rounds):
            for name, request in PAGES.items():
                new, old = timed(now, request, seconds), timed(before, request, seconds)
                note(name, "now_rps", new["rps"])
                note(name, "baseline_rps", old["rps"])
                note(name, "now_p50_ms", new["p50_ms"])
                note(name, "baseline_p50_ms", old["p50_ms"])
                note(name, "rps_ratio", new["rps"] / old["rps"])
            plain = timed(now, PAGES["table partial"], seconds)
            for name, request in NEW_ONLY.items():
                got = timed(now, request, seconds)
                note(name, "now_rps", got["rps"])
                note(name, "now_p50_ms", got["p50_ms"])
                note(name, "p50_vs_table_partial", got["p50_ms"] / plain["p50_ms"])
    return {name: {k: summary(v) for k, v in keys.items()} for name, keys in rows.items()}


TARGETS = [
    # Each: the row, its figure, the limit, the target in words.
    ("table partial", "rps_ratio", 0.9, "table partial with counts ≥ 90% of the baseline's req/s"),
    ("list page", "rps_ratio", 0.9, "list page with counts ≥ 90% of the baseline's req/s"),
    ("needs attention partial", "p50_vs_table_partial", 1.5, "needs attention p50 ≤ 1.5x table"),
    ("metrics", "now_p50_ms", 10.0, "/metrics p50 ≤ 10 ms"),
]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# The overview at {report['runs']:,} runs",
        "",
        f"Commit {report['commit']} against the baseline {report['baseline'][:10]} (before "
        f"the counts), {report['hardware'].get('cpu', '')}. Concurrency 1, {report['seconds']} s "
        f"per measurement, {report['rounds']} rounds alternating the servers; median of the "
        "rounds [min..max].",
        "",
        "## Targets",
        "",
        "| db | target | measured | met |",
        "|---|---|---|---|",
    ]
    for kind, rows in report["engines"].items():
        for row, key, limit, what in TARGETS:
            value = rows[row][key]
            med = value["median"]
            ok = med >= limit if key == "rps_ratio" else med <= limit
            lo, hi = value["spread"]
            lines.append(f"| {kind} | {what} | {med} [{lo}..{hi}] | {'yes' if ok else '**no**'} |")
    for kind, rows in report["engines"].items():
        lines += [
            "",
            f"## {kind}",
            "",
            "| request | this tree req/s | p50 ms | baseline req/s | p50 ms | req/s ratio |"
            " p50 ÷ table partial |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():

            def cell(key: str, r: dict[str, Any] = r) -> str:
                if key not in r:
                    return "—"
                lo, hi = r[key]["spread"]
                return f"{r[key]['median']} [{lo}..{hi}]"

            cells = [
                name,
                cell("now_rps"),
                cell("now_p50_ms"),
                cell("baseline_rps"),
                cell("baseline_p50_ms"),
                cell("rps_ratio"),
                cell("p50_vs_table_partial"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    kinds = database_kinds(parser, args.databases)
    report: dict[str, Any] = {
        "runs": args.runs,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "commit": git_commit(),
        "hardware": hardware(),
        "engines": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "baseline"
        base_tree.mkdir()
        report["baseline"] = export(args.baseline, base_tree)
        for kind in kinds:
            with database(kind) as url:
                seed(url, args.runs, tmp)
                report["engines"][kind] = bench_engine(url, base_tree, args.rounds, args.seconds)
    save(args.out, f"overview-{{stamp}}-{args.runs}", report, markdown(report))


if __name__ == "__main__":
    main()
