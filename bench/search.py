"""The run list's search at scale: server time of the table partial for a full-text search
and for "needs attention", against the unfiltered table partial in the same run.

    python -m bench.search [--runs 1000000] [--databases sqlite,postgres] [--rounds 3]
                           [--seconds 4]

Each engine gets a throwaway database seeded by bench.seed; then one statement gives the
failed runs error messages from a realistic vocabulary: "timeout" in 15% of them (about
3% of all runs), a rare word ("kerberos") in 0.1% of them (about 200 runs in a million).
One server answers; each round measures at concurrency 1 the table partial (`GET
/workflows/table` with HX-Request, the counts included) unfiltered, searching the common
word, searching the rare word, and with status=attention. Figures: the median of the
round p50s and their spread; ratios to the unfiltered partial are taken within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bulk import rows, seed
from bench.load import Request, Server, drive
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

PAGES = {
    "unfiltered": Request("GET", "/workflows/table", HX),
    "search: common word": Request("GET", "/workflows/table?q=timeout", HX),
    "search: rare word": Request("GET", "/workflows/table?q=kerberos", HX),
    "search: two words": Request("GET", "/workflows/table?q=upstream+timeout", HX),
    # The start of a word, asked for with `*`: FTS5 gathers every word it starts.
    "search: a word start": Request("GET", "/workflows/table?q=upstream+time*", HX),
    "status=attention": Request("GET", "/workflows/table?status=attention", HX),
}

# (share of failed runs in per mille, message): cumulative thresholds.
MESSAGES = [
    (150, "upstream timeout after 60 s waiting for the provider (node {node})"),
    (400, "the provider answered 503 Service Unavailable after 3 retries"),
    (650, "node output 'draft' is not a str: got null from the model"),
    (900, "rate limit exceeded: 429 Too Many Requests from api.openai.com"),
    (999, "configured to fail on attempt 1 (config.llm.fail_on_attempt)"),
    (1000, "Kerberos ticket expired for the tool host; sign in again"),
]


def _case(r: str) -> str:
    parts = " ".join(
        f"WHEN {r} < {limit} THEN '{text.replace(chr(39), chr(39) * 2)}'"
        for limit, text in MESSAGES
    )
    return f"CASE {parts} END"


def vocabulary(url: str) -> float:
    """One UPDATE: the failed runs' messages from the vocabulary; its seconds."""
    began = time.perf_counter()
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            # MATERIALIZED: SQLite would otherwise inline the subquery and draw a new
            # random() for every WHEN (then the rare word lands in 2 runs, not 200).
            conn.execute(
                "WITH x AS MATERIALIZED (SELECT rowid AS k, abs(random()) % 1000 AS r"
                " FROM workflow_run WHERE status = 'failed')"
                f" UPDATE workflow_run SET error_message = {_case('x.r')} FROM x"
                " WHERE workflow_run.rowid = x.k"
            )
            conn.commit()
            conn.execute("ANALYZE")
        finally:
            conn.close()
    else:
        rows(
            url,
            f"UPDATE workflow_run SET error_message = {_case('x.r')} FROM"
            " (SELECT id AS k, floor(random() * 1000)::int AS r FROM workflow_run"
            " WHERE status = 'failed') AS x WHERE workflow_run.id = x.k",
        )
        rows(url, "ANALYZE workflow_run")
    return round(time.perf_counter() - began, 1)


def shares(url: str) -> dict[str, int]:
    found = rows(
        url,
        "SELECT sum(CASE WHEN error_message LIKE '%timeout%' THEN 1 ELSE 0 END) AS common,"
        " sum(CASE WHEN error_message LIKE '%Kerberos%' THEN 1 ELSE 0 END) AS rare,"
        " count(*) AS runs FROM workflow_run",
    )[0]
    return {k: int(v or 0) for k, v in found.items()}


def timed(server: Server, request: Request, seconds: float) -> float:
    stats = asyncio.run(
        drive(server.url, [request], concurrency=1, max_requests=100_000, max_seconds=seconds)
    )
    out = stats.as_dict()
    assert not stats.errors and set(stats.status_codes) == {200}, out
    return float(out["p50_ms"])


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "spread": [round(min(values), 3), round(max(values), 3)],
    }


def bench_engine(url: str, rounds: int, seconds: float) -> dict[str, Any]:
    p50: dict[str, list[float]] = {name: [] for name in PAGES}
    ratio: dict[str, list[float]] = {name: [] for name in PAGES if name != "unfiltered"}
    with Server("app.web.app:create_app", server_env(url)) as server:
        for request in PAGES.values():  # warm: plans, caches, templates
            timed(server, request, 0.5)
        for _ in range(rounds):
            plain = timed(server, PAGES["unfiltered"], seconds)
            p50["unfiltered"].append(plain)
            for name, request in PAGES.items():
                if name == "unfiltered":
                    continue
                got = timed(server, request, seconds)
                p50[name].append(got)
                ratio[name].append(got / plain)
    return {
        "p50_ms": {k: summary(v) for k, v in p50.items()},
        "ratio_to_unfiltered": {k: summary(v) for k, v in ratio.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Search at {report['runs']:,} runs",
        "",
        f"Commit {report['commit']}, {report['hardware'].get('cpu', '')}. Server p50 of the"
        f" table partial (counts included) at concurrency 1, {report['seconds']} s a"
        f" measurement; median of {report['rounds']} rounds (spread min..max of the rounds);"
        " ratios taken within each round. Target: search and needs attention ≤ 1.5x"
        " unfiltered.",
        "",
    ]
    for kind, r in report["engines"].items():
        s = r["shares"]
        lines += [
            f"## {kind}",
            "",
            f"Seeded in {r['seed_seconds']} s, messages in {r['vocabulary_seconds']} s;"
            f" 'timeout' in {s['common']:,} runs, 'kerberos' in {s['rare']:,},"
            f" of {s['runs']:,}.",
            "",
            "| table partial | p50 ms | spread ms | ratio to unfiltered | spread | ≤ 1.5x |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in r["p50_ms"].items():
            q = r["ratio_to_unfiltered"].get(name)
            cells = [name, p["median"], f"{p['spread'][0]}..{p['spread'][1]}"]
            if q is None:
                cells += ["1", "", ""]
            else:
                met = "yes" if q["median"] <= 1.5 else "no"
                cells += [q["median"], f"{q['spread'][0]}..{q['spread'][1]}", met]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
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
        for kind in kinds:
            with database(kind) as url:
                began = time.perf_counter()
                seed(url, args.runs, tmp)
                seeded = round(time.perf_counter() - began, 1)
                messages = vocabulary(url)
                result = bench_engine(url, args.rounds, args.seconds)
                result |= {
                    "seed_seconds": seeded,
                    "vocabulary_seconds": messages,
                    "shares": shares(url),
                }
                report["engines"][kind] = result
                print(json.dumps({kind: result}), flush=True)
    save(args.out, f"search-{{stamp}}-{args.runs}", report, markdown(report))


if __name__ == "__main__":
    main()
