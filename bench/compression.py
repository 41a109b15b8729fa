"""Which compression, at which level, gets the dashboard's pages to a browser soonest.

    python -m bench.compression [--runs 10000] [--repeat 200]

Seeds a throwaway SQLite database with bench.seed, renders the pages an operator loads
most (the list page, the table partial, a run's page) through the real app in process,
and for each codec and level measures the server's time to compress each body, the
browser's time to decompress it (both medians of `--repeat`, with the spread of five
batches) and its size. The time a page takes to arrive is then

    compress + size / bandwidth + decompress

on two links: a LAN (1 Gbit/s) and a slow link (1.6 Mbit/s, Chrome's "Slow 4G"). The
round trip is the same for every choice and left out. "Regret" is how many ms later a
page arrives than with the best choice for that page and link; per codec family a
browser may offer in Accept-Encoding (gzip everywhere; br in current browsers over
HTTPS; zstd in Chromium-based ones), the level with the smallest worst regret over
both links and all pages is the one to serve. Results go to
bench/results/compression-<time>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import zstandard

from bench.bulk import seed
from bench.run import HX, RESULTS, git_commit, hardware, save

LINKS = {"LAN 1 Gbit/s": 1e9, "slow link 1.6 Mbit/s": 1.6e6}

Codec = tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]


def codecs() -> list[Codec]:
    found: list[Codec] = [("identity", lambda b: b, lambda b: b)]
    for level in (1, 3, 6, 9):
        found.append(
            (
                f"gzip {level}",
                lambda b, lv=level: gzip.compress(b, compresslevel=lv, mtime=0),
                gzip.decompress,
            )
        )
    for quality in (0, 2, 4, 5, 6, 8, 11):
        found.append(
            (
                f"br {quality}",
                lambda b, q=quality: brotli.compress(b, quality=q, mode=brotli.MODE_TEXT),
                brotli.decompress,
            )
        )
    for level in (1, 3, 6, 9):
        found.append(
            (
                f"zstd {level}",
                lambda b, lv=level: zstandard.ZstdCompressor(level=lv).compress(b),
                zstandard.ZstdDecompressor().decompress,
            )
        )
    return found


def timed(fn: Callable[[bytes], bytes], body: bytes, repeat: int) -> dict[str, Any]:
    """Median ms of one call over five batches of `repeat // 5`, and their spread."""
    per_batch = max(1, repeat // 5)
    batches = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(per_batch):
            fn(body)
        batches.append((time.perf_counter() - began) * 1000 / per_batch)
    return {
        "median": round(statistics.median(batches), 4),
        "spread": [round(min(batches), 4), round(max(batches), 4)],
    }


async def pages(url: str) -> dict[str, bytes]:
    import httpx

    from app.settings import Settings, normalise_database_url
    from app.web.app import create_app

    app = create_app(
        Settings(
            database_url=normalise_database_url(url),
            stale_after_seconds=1e9,
            recovery_interval_seconds=3600,
            allowed_hosts=("bench",),
        )
    )
    plain = {"Accept-Encoding": "identity"}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        listing = await client.get("/workflows", headers={"Accept": "application/json", **plain})
        run_id = listing.json()["runs"][0]["id"]
        got = {
            "list page": await client.get("/workflows", headers=plain),
            "table partial": await client.get("/workflows/table", headers={**HX, **plain}),
            "run page": await client.get(f"/workflows/{run_id}", headers=plain),
        }
    for name, response in got.items():
        response.raise_for_status()
        assert "content-encoding" not in response.headers, name
    return {name: response.content for name, response in got.items()}


def measure(bodies: dict[str, bytes], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, compress, decompress in codecs():
        per_page = {}
        for page, body in bodies.items():
            packed = compress(body)
            assert decompress(packed) == body
            c = timed(compress, body, repeat)
            d = timed(decompress, packed, repeat)
            arrive = {
                link: round(c["median"] + len(packed) * 8 / bps * 1000 + d["median"], 4)
                for link, bps in LINKS.items()
            }
            per_page[page] = {
                "bytes": len(packed),
                "compress_ms": c,
                "decompress_ms": d,
                "arrives_ms": arrive,
            }
        out[name] = per_page
    # Regret: how many ms later than with the best choice, per page and link.
    for page in bodies:
        for link in LINKS:
            best = min(out[n][page]["arrives_ms"][link] for n in out)
            for n in out:
                out[n][page].setdefault("regret", {})[link] = round(
                    out[n][page]["arrives_ms"][link] - best, 3
                )
    return out


def markdown(report: dict[str, Any]) -> str:
    pages_ = list(report["bodies"])
    lines = [
        "# Compression of the dashboard's pages",
        "",
        f"Commit {report['commit']}, {report['hardware'].get('cpu', '')}, {report['runs']:,}"
        f" runs. Plain sizes: "
        + ", ".join(f"{p} {b:,} B" for p, b in report["bodies"].items())
        + ". Time to arrive = compress + bytes / bandwidth + decompress (medians of"
        f" {report['repeat']} calls; the spread of five batches is in the JSON). Regret:"
        " ms later than with the best choice for that page and link.",
        "",
    ]
    for page in pages_:
        lines += [
            f"## {page}",
            "",
            "| codec | bytes | compress ms | decompress ms | "
            + " | ".join(f"{link} ms | regret ms" for link in LINKS)
            + " |",
            "|---|---|---|---|" + "---|---|" * len(LINKS),
        ]
        for name, per_page in report["codecs"].items():
            r = per_page[page]
            cells = [
                name,
                f"{r['bytes']:,}",
                r["compress_ms"]["median"],
                r["decompress_ms"]["median"],
            ]
            for link in LINKS:
                cells += [r["arrives_ms"][link], r["regret"][link]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    lines += ["## Choice", "", report["choice_text"], ""]
    return "\n".join(lines)


def choose(result: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The codec with the smallest worst regret, per family a browser may offer."""
    worst = {
        name: max(r for page in per_page.values() for r in page["regret"].values())
        for name, per_page in result.items()
    }
    best = {
        family: min((n for n in worst if n.split()[0] == family), key=worst.__getitem__)
        for family in ("gzip", "br", "zstd")
    }
    text = "; ".join(f"{family}: {n} (worst regret {worst[n]} ms)" for family, n in best.items())
    overall = min(worst, key=worst.__getitem__)
    text += (
        f". Overall: {overall} (worst regret {worst[overall]} ms; no compression"
        f" {worst['identity']} ms)."
    )
    return text, best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/runs.db"
        seed(url, args.runs, tmp)
        bodies = asyncio.run(pages(url))
    result = measure(bodies, args.repeat)
    text, best = choose(result)
    report = {
        "commit": git_commit(),
        "hardware": hardware(),
        "runs": args.runs,
        "repeat": args.repeat,
        "links_bits_per_second": LINKS,
        "bodies": {k: len(v) for k, v in bodies.items()},
        "codecs": result,
        "choice": best,
        "choice_text": text,
    }
    save(args.out, "compression-{stamp}", report, markdown(report))


if __name__ == "__main__":
    main()
