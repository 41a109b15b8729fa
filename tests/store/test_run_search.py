"""The run list's search, on the database: what the indexes find is what a direct Python
computation over the runs finds, for random texts and filters; the index follows every
insert, change and delete; keyset paging walks a search; several workflows at once."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from factories import fixed_id, make_run
from support import FROZEN_NOW

from app.store import counts as counts_module
from app.store import runs as runs_module
from app.store.counts import RunCounts, run_counts
from app.store.models import Cursor, RunFilters
from app.store.runs import RunStore
from app.store.search import SearchError, parse, words_of
from app.store.tables import WorkflowRun

VOCABULARY = [
    "timeout", "timed", "upstream", "rate", "limit", "quota", "refused", "connection",
    "schema", "invalid", "json", "dead", "beef", "cafe", "node", "fetch", "parse", "503",
    "429", "kerberos", "oauth", "token", "expired", "model", "answer", "empty",
]  # fmt: skip
WORKFLOWS = ["support_triage", "article_writer", "echo", "paid_pipeline"]
NODES = ["fetch_url", "parse", "write", "ship", None]
STATUSES = ["pending", "running", "completed", "failed", "failed", "cancelled"]
FINISHED = {"completed", "failed", "cancelled"}


def _message(rng: random.Random) -> str | None:
    if rng.random() < 0.25:
        return None
    words = rng.sample(VOCABULARY, rng.randint(1, 6))
    seps = [" ", ": ", ", ", " (", "-", "_", ".", "/", '"']
    return "".join(w + rng.choice(seps) for w in words).strip()


async def _seed(rng: random.Random, runs: int) -> list[dict[str, Any]]:
    made = []
    for n in range(1, runs + 1):
        status = rng.choice(STATUSES)
        message = _message(rng) if status in ("failed", "cancelled") else None
        node = rng.choice(NODES) if message else None
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=rng.randrange(0, 3000)),
            status=status,
            workflow_name=rng.choice(WORKFLOWS),
            error=("Err", message, node) if message else None,
            tokens=rng.randrange(0, 50),
        )
        made.append({"n": n})
    # A few restarts, so that "needs attention" differs from "failed".
    failed = await WorkflowRun.raw("SELECT id FROM workflow_run WHERE status = 'failed' LIMIT 5")
    for i, row in enumerate(failed):
        await make_run(
            runs + 1 + i,
            created_at=FROZEN_NOW,
            status="completed",
            restarted_from=str(row["id"]),
            workflow_name="echo",
        )
    return made


async def _all_runs() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await WorkflowRun.select(
        WorkflowRun.id,
        WorkflowRun.status,
        WorkflowRun.workflow_name,
        WorkflowRun.error_message,
        WorkflowRun.error_node,
        WorkflowRun.created_at,
        WorkflowRun.total_tokens,
        WorkflowRun.restarted_from,
    )
    return rows


def _expected(runs: list[dict[str, Any]], filters: RunFilters) -> list[dict[str, Any]]:
    """The runs `filters` match, computed in Python, newest first."""
    search = parse(filters.text) if filters.text else None
    restarted = {str(r["restarted_from"]) for r in runs if r["restarted_from"]}
    found = []
    for run in runs:
        run_id = str(run["id"])
        if filters.status == "attention":
            if run["status"] != "failed" or run_id in restarted:
                continue
        elif filters.status and run["status"] != filters.status:
            continue
        if filters.workflow and run["workflow_name"] not in filters.workflow:
            continue
        if filters.since and run["created_at"] < filters.since:
            continue
        if search is not None:
            digits = filters.text.replace("-", "").lower() if filters.text else ""
            by_id = search.id_bounds is not None and run_id.replace("-", "").startswith(digits)
            fields = [run["workflow_name"], run["error_node"], run["error_message"]]
            text = " ".join(f or "" for f in fields).lower()
            words = set(words_of(text))
            whole = [w for w in search.words if not w.endswith("*")]
            starts = [w[:-1] for w in search.words if w.endswith("*")]
            by_words = bool(search.words) and all(w in words for w in whole)
            by_words = by_words and all(any(w.startswith(s) for w in words) for s in starts)
            if not (by_id or by_words):
                continue
        found.append(run)
    found.sort(key=lambda r: (r["created_at"], str(r["id"])), reverse=True)
    return found


def _random_query(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return fixed_id(rng.randint(1, 60))[: rng.choice([1, 4, 8, 10])]
    words = rng.sample(
        [*VOCABULARY, "support", "triage", "fetch_url", "nothing"], rng.randint(1, 3)
    )
    if rng.random() < 0.4:  # the start of a word, asked for as such or not
        i = rng.randrange(len(words))
        words[i] = words[i][: max(1, len(words[i]) // 2)] + rng.choice(["*", "*", ""])
    if rng.random() < 0.3:  # with punctuation and capitals, as pasted from a log
        return '"' + ": ".join(w.upper() for w in words) + '"'
    return " ".join(words)


async def _walk(store: RunStore, filters: RunFilters, limit: int) -> list[str]:
    """Every run of a filter, page by page along the keyset cursor, then back to the
    newest page along `before` (each page newer than the last, the same runs)."""
    pages: list[list[str]] = []
    cursor = None
    for _ in range(100):
        page = await store.list_runs(filters, cursor, limit)
        pages.append([r.id for r in page.runs])
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor)
    else:
        raise AssertionError("paging did not end")
    back = page
    for expected in reversed(pages[:-1]):
        assert back.prev_cursor is not None
        back = await store.list_runs(filters, None, limit, before=Cursor.decode(back.prev_cursor))
        assert [r.id for r in back.runs] == expected
    return [run for ids in pages for run in ids]


def _counts_of(runs: list[dict[str, Any]], attention: int) -> RunCounts:
    by: dict[str, int] = {}
    tokens = 0
    for run in runs:
        by[run["status"]] = by.get(run["status"], 0) + 1
        if run["status"] in FINISHED:
            tokens += run["total_tokens"]
    return RunCounts(by_status=by, tokens=tokens, cost_usd=0.0, attention=attention)


@pytest.mark.parametrize("plan", ["matches first", "newest first", "newest first, in chunks"])
async def test_searches_find_what_python_finds_with_any_filter(
    empty_db: str, plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every way of finding a page: from the matches (rare words), or walking the runs
    # newest first (words in more than COMMON_MATCHES runs); on SQLite first among the
    # newest NEWEST_CHUNK runs, here smaller than a page or a few pages. Rowids follow
    # the insert order and creation times do not, as after an import.
    monkeypatch.setattr(runs_module, "_common", {})
    if plan == "newest first, in chunks":
        monkeypatch.setattr(runs_module, "NEWEST_CHUNK", 9)
    if plan != "matches first":
        monkeypatch.setattr(runs_module, "COMMON_MATCHES", -1)
        monkeypatch.setattr(runs_module, "COMMON_SHARE", -1.0)
    rng = random.Random(15)
    await _seed(rng, 60)
    runs = await _all_runs()
    store = RunStore(clock=lambda: FROZEN_NOW)
    for round_ in range(60):
        filters = RunFilters(
            text=_random_query(rng),
            status=rng.choice([None, None, "failed", "attention", "cancelled"]),
            workflow=rng.choice([(), (), ("echo",), ("support_triage", "paid_pipeline")]),
            since=rng.choice([None, FROZEN_NOW - timedelta(minutes=1500)]),
        )
        expected = _expected(runs, filters)
        got = await _walk(store, filters, rng.choice([3, 7, 50]))
        assert got == [str(r["id"]) for r in expected], (round_, filters)
        # The counts strip: exact for a search, over every status.
        counted = await run_counts(filters)
        every = _expected(
            runs, RunFilters(text=filters.text, workflow=filters.workflow, since=filters.since)
        )
        attention = len(
            _expected(
                runs,
                RunFilters(
                    text=filters.text,
                    workflow=filters.workflow,
                    since=filters.since,
                    status="attention",
                ),
            )
        )
        want = _counts_of(every, attention)
        assert (counted.by_status, counted.tokens, counted.attention) == (
            want.by_status,
            want.tokens,
            want.attention,
        ), (round_, filters)


async def test_the_index_follows_inserts_changes_and_deletes(empty_db: str) -> None:
    store = RunStore(clock=lambda: FROZEN_NOW)

    async def found(text: str) -> list[str]:
        return [r.id for r in (await store.list_runs(RunFilters(text=text))).runs]

    run = await make_run(1, created_at=FROZEN_NOW, status="running", workflow_name="billing")
    assert await found("billing") == [run]
    assert await found("kerberos") == []
    await WorkflowRun.update(
        {
            WorkflowRun.status: "failed",
            WorkflowRun.error_message: "Kerberos ticket expired (node auth)",
            WorkflowRun.error_node: "auth_check",
        }
    ).where(WorkflowRun.id == uuid.UUID(run))
    assert await found("kerberos") == [run]
    assert await found("ticket exp*") == [run]
    assert await found("auth check") == [run]
    assert (await run_counts(RunFilters(text="kerberos"))).by_status == {"failed": 1}
    # A change of status only (a progress write) keeps the words.
    await WorkflowRun.update({WorkflowRun.status: "cancelled"}).where(
        WorkflowRun.id == uuid.UUID(run)
    )
    assert await found("kerberos") == [run]
    assert (await run_counts(RunFilters(text="kerberos"))).by_status == {"cancelled": 1}
    # The message changes: old words go, new ones come.
    await WorkflowRun.update({WorkflowRun.error_message: "quota exceeded"}).where(
        WorkflowRun.id == uuid.UUID(run)
    )
    assert await found("kerberos") == []
    assert await found("quota") == [run]
    await WorkflowRun.update({WorkflowRun.error_message: None}).where(
        WorkflowRun.id == uuid.UUID(run)
    )
    assert await found("quota") == []
    other = await make_run(2, created_at=FROZEN_NOW, status="failed", error=("E", "quota", None))
    await WorkflowRun.delete().where(WorkflowRun.id == uuid.UUID(run))
    assert await found("billing") == []
    assert await found("quota") == [other]
    assert (await run_counts(RunFilters(text="billing"))).total == 0


async def test_a_search_is_paged_by_keyset_without_gaps_or_repeats(empty_db: str) -> None:
    for n in range(1, 24):
        message = "upstream timeout" if n % 3 else "schema invalid"
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(seconds=n // 2),  # ties on created_at
            status="failed",
            error=("E", message, "fetch"),
        )
    store = RunStore(clock=lambda: FROZEN_NOW)
    walked = await _walk(store, RunFilters(text="timeout"), 4)
    assert len(walked) == len(set(walked)) == 16
    everything = await store.list_runs(RunFilters(text="timeout"), None, 200)
    assert walked == [r.id for r in everything.runs]


async def test_several_workflows_at_once(empty_db: str) -> None:
    names = ["a", "b", "c"]
    for n in range(1, 13):
        await make_run(n, created_at=FROZEN_NOW - timedelta(minutes=n), workflow_name=names[n % 3])
    store = RunStore(clock=lambda: FROZEN_NOW)
    page = await store.list_runs(RunFilters(workflow=("a", "c")))
    assert {r.workflow_name for r in page.runs} == {"a", "c"}
    assert len(page.runs) == 8
    counts = await run_counts(RunFilters(workflow=("a", "c")))
    assert counts.total == 8
    since = FROZEN_NOW - timedelta(minutes=5, seconds=30)
    assert (await run_counts(RunFilters(workflow=("a", "c"), since=since))).total == 3
    assert (await run_counts(RunFilters(workflow="b"))).total == 4
    assert RunFilters(workflow="b").workflow == ("b",)


@pytest.mark.parametrize(
    "text",
    ['"', "'", "*", "()", "NEAR(", "AND", "a OR b", "x:*", "!@#", "-", "é", "col:word", "^start"],
)
async def test_odd_input_never_reaches_the_query_language(empty_db: str, text: str) -> None:
    await make_run(1, created_at=FROZEN_NOW, status="failed", error=("E", "and or near", None))
    store = RunStore(clock=lambda: FROZEN_NOW)
    try:
        parse(text)
    except SearchError as exc:
        assert "Search looks for" in exc.message
        return
    page = await store.list_runs(RunFilters(text=text))
    assert isinstance(page.runs, tuple)
    await run_counts(RunFilters(text=text))


def test_what_a_search_cannot_be() -> None:
    for bad in ["!!!", "  ", "“”", "x" * 201, " ".join("abcdefghij")]:
        if not bad.strip():
            continue
        with pytest.raises(SearchError) as caught:
            parse(bad)
        assert caught.value.message.startswith("Search looks for")
    assert parse("3f2a").id_bounds is not None
    assert parse("3F2A-9").words == ("3f2a", "9")
    assert parse("timeout").id_bounds is None
    assert parse('"Timeout:" upstream').fts5() == '"timeout" "upstream"'
    assert parse("Upstr* timeout").fts5() == '"upstr"* "timeout"'
    assert parse("timeout upstr*").tsquery() == "timeout & upstr:*"
    assert parse("time * out").words == ("time", "out")  # a lone star is no word


async def test_a_search_counts_up_to_its_cap_and_says_more(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(1, 8):
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=n),
            status="failed",
            error=("ProviderError", "upstream timeout", "draft"),
        )
    monkeypatch.setattr(counts_module, "SEARCH_CAP", 5)
    counted = await run_counts(RunFilters(text="timeout"))
    assert counted.capped and counted.total > 5
    monkeypatch.setattr(counts_module, "SEARCH_CAP", 7)
    counted = await run_counts(RunFilters(text="timeout"))
    assert not counted.capped and counted.by_status == {"failed": 7}
    # The counters' own filters are never capped.
    monkeypatch.setattr(counts_module, "SEARCH_CAP", 1)
    assert not (await run_counts(RunFilters(status="failed"))).capped


async def test_a_common_search_looks_among_the_newest_runs_first_and_misses_none(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite looks for a common word in the rowid range of the newest NEWEST_CHUNK runs
    first. Rowids need not follow creation: an older run outside that range (n=1) must
    not be passed over for older ones inside it (n=3, n=4)."""
    monkeypatch.setattr(runs_module, "_common", {})
    monkeypatch.setattr(runs_module, "COMMON_MATCHES", -1)
    monkeypatch.setattr(runs_module, "COMMON_SHARE", -1.0)
    monkeypatch.setattr(runs_module, "NEWEST_CHUNK", 3)
    minutes_ago = {1: 5, 2: 1, 3: 9, 4: 8, 5: 2, 6: 3}  # inserted in this order
    for n, minutes in minutes_ago.items():
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=minutes),
            status="failed",
            error=("E", "upstream timeout", "fetch"),
        )
    store = RunStore(clock=lambda: FROZEN_NOW)
    page = await store.list_runs(RunFilters(text="timeout"), None, 4)
    assert [r.id for r in page.runs] == [fixed_id(n) for n in (2, 5, 6, 1)]
    assert await _walk(store, RunFilters(text="timeout"), 2) == [
        fixed_id(n) for n in (2, 5, 6, 1, 4, 3)
    ]
