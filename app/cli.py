"""The `configurable-agents` command line: run, validate, migrate, serve."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from app.errors import AppError, InvalidInputs, SpecInvalid
from app.logs import configure_logging
from app.settings import Settings

__all__ = ["main"]


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def _settings(**overrides: object) -> Settings:
    """The settings, with a bad environment reported as a usage error, not a traceback."""
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


async def _open_store(settings: Settings) -> Any:
    """Configure the database, migrate it, register this process and fail runs of
    processes that died; returns the services."""
    from app.services.wiring import build_services
    from app.store import db

    db.configure(settings.database_url)
    await db.migrate()
    services = build_services(settings, kind="cli")
    await services.supervisor.start()
    await services.supervisor.recover()
    return services


@click.group(
    help="Run LLM agent workflows written in YAML and record every run.\n\n"
    "The database is DATABASE_URL (sqlite:///path.db or postgresql://...); by default "
    "configurable-agents.db in the working directory.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
def main() -> None:
    pass


def _report(loaded: Any) -> None:
    """What the reader of a valid file should know: ignored keys and sections, and what
    keeps it from running here."""
    for issue in loaded.warnings:
        click.echo(f"  warning: {issue}")
    for issue in _unrunnable(loaded):
        click.echo(f"  cannot run here: {issue}")


def _unrunnable(loaded: Any) -> list[Any]:
    from app.workflows.executor import runnable_problems
    from app.workflows.providers import ProviderPolicy

    # As `run` would run it: on the user's own machine, with this environment.
    policy = ProviderPolicy.from_env(trust_workflow=True)
    return [loaded.issue(path, why) for path, why in runnable_problems(loaded.spec, policy)]


@main.command(
    help="Check workflow files: lists the keys and sections that are ignored, and what "
    "keeps a valid file from running on this machine (a feature not implemented here, a "
    "tool not enabled).\n\n"
    "Exit code: 0 when every file is valid, 2 otherwise."
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--verbose", "-v", is_flag=True, help="Also list each node (as the original).")
def validate(files: tuple[str, ...], verbose: bool) -> None:
    from app.workflows.loader import read_workflow

    failed = False
    for name in files:
        try:
            loaded = read_workflow(Path(name))
        except SpecInvalid as exc:
            failed = True
            _echo_err(f"invalid: {name}")
            for issue in exc.issues:
                _echo_err(f"  {issue}")
            continue
        spec = loaded.spec
        click.echo(f"ok: {name} — workflow {spec.flow.name!r}, {len(spec.nodes)} node(s)")
        if verbose:
            for node in spec.nodes:
                kind = "code" if node.code is not None else spec.llm_for(node.id).provider
                click.echo(f"  node {node.id} ({kind}) → {', '.join(node.outputs)}")
        _report(loaded)
    sys.exit(2 if failed else 0)


def _parse_inputs(spec: Any, pairs: tuple[str, ...], inputs_json: str | None) -> dict[str, Any]:
    from app.workflows.loader import parse_cli_value

    inputs: dict[str, Any] = {}
    if inputs_json:
        try:
            loaded = json.loads(Path(inputs_json).read_text(encoding="utf-8"))
        except OSError as exc:
            raise click.UsageError(f"cannot read --inputs-json {inputs_json}: {exc}") from None
        except ValueError as exc:
            raise click.UsageError(f"--inputs-json {inputs_json} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.UsageError(f"--inputs-json {inputs_json} must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--input {pair!r}: write it as name=value")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]  # topic='AI Safety', quoted as the original's examples write it
        inputs[key.strip()] = parse_cli_value(spec, key.strip(), raw)
    return inputs


def _runnable(
    file: str, pairs: tuple[str, ...], inputs_json: str | None
) -> tuple[Any, dict[str, Any]]:
    """The workflow and inputs `run` runs, after printing the file's warnings; exits 2
    naming what is wrong, or what keeps the file from running here, with its line."""
    from app.workflows.loader import read_workflow

    try:
        loaded = read_workflow(Path(file))
        inputs = _parse_inputs(loaded.spec, pairs, inputs_json)
    except SpecInvalid as exc:
        _echo_err(f"invalid workflow: {file}")
        for issue in exc.issues:
            _echo_err(f"  {issue}")
        sys.exit(2)
    except InvalidInputs as exc:
        _echo_err(f"invalid input: {exc.message}")
        sys.exit(2)
    for issue in loaded.warnings:
        _echo_err(f"warning: {issue}")
    unrunnable = _unrunnable(loaded)
    if unrunnable:
        _echo_err(f"cannot run {file} here:")
        for issue in unrunnable:
            _echo_err(f"  {issue}")
        sys.exit(2)
    return loaded.spec, inputs


async def _progress(node_id: str, event: str, data: dict[str, Any]) -> None:
    item = data.get("item_index")
    label = f"{node_id}[{item}]" if item is not None else node_id
    if event == "started":
        _echo_err(f"→ {label} …")
    elif event == "tool":
        failed = f": {data['error']}" if data.get("error") else ""
        _echo_err(f"  ↳ {data.get('tool')}{failed}")
    elif event == "completed":
        _echo_err(f"✓ {label} ({data.get('tokens', 0)} tokens)")
    else:
        _echo_err(f"✗ {label}: {data.get('error') or event}")


@main.command(
    help="Run a workflow file once and record the run.\n\n"
    "Values given with --input are parsed by their state field's type: JSON for lists, "
    "dicts and objects.\n\n"
    "Exit code: 0 when the run completed, 1 when it failed, 2 for bad usage or an invalid file.\n\n"
    "Example: configurable-agents run examples/echo.yaml --input message=hello"
)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "-i", "pairs", multiple=True, metavar="NAME=VALUE", help="An input.")
@click.option("--inputs-json", type=click.Path(dir_okay=False), help="A JSON object of inputs.")
@click.option("--verbose", "-v", is_flag=True, help="Log at DEBUG level.")
@click.option(
    "--enable-profiling",
    is_flag=True,
    help="Accepted for the original's command line; every run records each node's timing.",
)
def run(
    file: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    verbose: bool,
    enable_profiling: bool,
) -> None:
    if verbose:
        logging.basicConfig(level=logging.DEBUG)
    if enable_profiling:
        _echo_err(
            "note: --enable-profiling changes nothing here: every run records each node's "
            "duration, shown by the dashboard"
        )
    spec, inputs = _runnable(file, pairs, inputs_json)
    settings = _settings()

    async def go() -> Any:
        from app.store import db

        services = None
        try:
            services = await _open_store(settings)
            return await services.runs.run_workflow(spec, inputs, trigger="cli", on_step=_progress)
        finally:
            if services is not None:
                await services.supervisor.stop()
            await db.close()

    try:
        detail = asyncio.run(go())
    except InvalidInputs as exc:
        _echo_err(f"invalid input: {exc.message}")
        sys.exit(2)
    except AppError as exc:
        _echo_err(f"error: {exc.message}")
        sys.exit(2)
    summary = detail.summary
    _echo_err(f"run {summary.id} {summary.status}")
    if summary.status == "completed":
        click.echo(json.dumps(detail.outputs, indent=2, ensure_ascii=False))
        sys.exit(0)
    _echo_err(f"{summary.error_type}: {summary.error_message}")
    sys.exit(1)


@main.command(help="Create or update the database schema. Running it again changes nothing.")
def migrate() -> None:
    from app.store import db

    settings = _settings()

    async def go() -> str:
        db.configure(settings.database_url)
        try:
            return await db.migrate()
        finally:
            await db.close()

    report = asyncio.run(go())
    applied = "no migrations needed" if "No migrations need" in report else "migrations applied"
    if "queue schema installed" in report:
        applied += " (and the queue's schema installed)"
    click.echo(f"{applied}: {settings.database_url.split('@')[-1]}")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command(
    help="Serve the dashboard (migrating the database first).\n\n"
    "Another address than loopback is refused unless tokens are configured "
    "(CA_OPERATOR_TOKENS, CA_VIEWER_TOKENS or CA_TOKENS_FILE)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Load example runs (some failed, one running).")
@click.option(
    "--allow-remote-without-auth",
    is_flag=True,
    help="DANGEROUS: serve on a non-loopback address with no tokens configured, so anyone "
    "who can reach it can restart and cancel runs.",
)
def serve(host: str, port: int, demo: bool, allow_remote_without_auth: bool) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from app.web.app import create_app

    settings = _settings(host=host, port=port)
    json_logs = configure_logging(settings.log_format)
    if not _is_loopback(host) and not settings.auth_enabled:
        if not allow_remote_without_auth:
            raise click.UsageError(
                f"refusing to serve on {host} without authentication: set CA_OPERATOR_TOKENS "
                "(and CA_VIEWER_TOKENS) or CA_TOKENS_FILE, or bind to 127.0.0.1"
            )
        _echo_err(
            f"WARNING: serving on {host} with NO authentication: anyone who can reach "
            "it can restart and cancel runs."
        )
    if not _is_loopback(host) and not settings.allowed_hosts:
        raise click.UsageError(
            f"serving on {host} needs CA_ALLOWED_HOSTS: the host names (with the port, "
            f"e.g. dashboard.example.com:{port}) that browsers use to reach the dashboard"
        )
    if settings.auth_enabled and not settings.secret:
        _echo_err(
            "WARNING: CA_SECRET is not set: browser sessions end when this process stops "
            "and are not shared with other dashboards (set it to `openssl rand -hex 32`)."
        )
    application = create_app(settings, demo=demo)
    _echo_err(
        f"Dashboard on http://{host}:{port}/workflows (database: "
        f"{settings.database_url.split('@')[-1]})"
    )
    # On SIGTERM runs drain for the grace period (then hand themselves back); uvicorn
    # must not wait for them, or for open streams, any longer than that.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=int(settings.grace_seconds) + 5,
        # X-Forwarded-Proto/-For only from the TLS proxies named in CA_TRUSTED_PROXIES.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        # JSON: uvicorn's records go through ours, and the app logs each request itself.
        log_config=None if json_logs else LOGGING_CONFIG,
        access_log=not json_logs,
    )


@main.command(
    help="Execute queued runs (EXECUTION=queue, PostgreSQL). Run as many as you like, on "
    "any machines that reach the database. SIGTERM stops taking runs, lets running runs "
    "reach their next node (up to CA_GRACE_SECONDS, default 30), queues what is left "
    "again for another worker, then stops."
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Runs executed at once by this worker.",
)
def worker(concurrency: int) -> None:
    from app.services.queue import run_worker
    from app.services.wiring import build_services
    from app.store import db

    settings = _settings(execution="queue")
    configure_logging(settings.log_format)

    async def go() -> None:
        db.configure(settings.database_url)
        await db.migrate()
        await db.open_pool(max_size=concurrency + 2)
        services = build_services(settings, kind="worker", queue_pool_max=concurrency + 2)
        try:
            async with services.queue_app.open_async():
                await run_worker(
                    services.queue_app,
                    services.runs,
                    concurrency=concurrency,
                    ready=lambda: _echo_err(
                        f"worker ready: {services.supervisor.describe()}, concurrency "
                        f"{concurrency}, database {settings.database_url.split('@')[-1]}"
                    ),
                )
        finally:
            await db.close()

    asyncio.run(go())
