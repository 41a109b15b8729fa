"""Profile one dashboard request in process with pyinstrument.

    pip install pyinstrument
    python -m bench.profile --database-url URL --path /workflows [--hx] [--json] [-n 50]

The app is the real one (`create_app`) called through httpx's ASGI transport on
the same event loop, so the profile shows the handler, the store, Piccolo and the templates
without uvicorn or the network. Prints pyinstrument's text report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time


async def profile(database_url: str, path: str, headers: dict[str, str], count: int) -> str:
    import httpx
    from pyinstrument import Profiler

    from app.settings import Settings, normalise_database_url
    from app.web.app import create_app

    settings = Settings(
        database_url=normalise_database_url(database_url),
        stale_after_seconds=1e9,
        recovery_interval_seconds=3600,
        allowed_hosts=("bench",),
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # the app runs on this event loop
    client = httpx.AsyncClient(transport=transport, base_url="http://bench")
    async with app.lifespan(), client:
        for _ in range(5):
            (await client.get(path, headers=headers)).raise_for_status()
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        began = time.perf_counter()
        profiler.start()
        for _ in range(count):
            (await client.get(path, headers=headers)).raise_for_status()
        profiler.stop()
        per_request = (time.perf_counter() - began) * 1000 / count
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    head = f"{count} x GET {path} {headers or ''}: {per_request:.1f} ms per request (profiled)"
    return f"{head}\n\n{text}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--path", default="/workflows/table")
    parser.add_argument("--hx", action="store_true", help="send HX-Request: true")
    parser.add_argument("--json", action="store_true", help="send Accept: application/json")
    parser.add_argument("-n", type=int, default=50, help="requests to profile")
    args = parser.parse_args()
    headers = {}
    if args.hx:
        headers["HX-Request"] = "true"
    if args.json:
        headers["Accept"] = "application/json"
    print(asyncio.run(profile(args.database_url, args.path, headers, args.n)))


if __name__ == "__main__":
    main()
