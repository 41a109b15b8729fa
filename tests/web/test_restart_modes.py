"""Restart with edited inputs and resume from the failed node, through real HTTP on
both engines: what is created, what is reused, what it costs, and the refusals."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

from support import JSON, new_service

from app.store.tables import WorkflowRun
from app.workflows.loader import parse_workflow

# n1 and n2 succeed; n3 fails on the first attempt: the resumed run pays for n3 only.
CHAIN_TEXT = textwrap.dedent(
    """\
        schema_version: "1.0"
        flow: {name: paid_chain}
        state:
          fields:
            topic: {type: str, required: true, description: What to write about}
            words: {type: int, default: 100}
            tags: {type: "list[str]", default: []}
            outline: {type: str, default: ""}
            draft: {type: str, default: ""}
            final: {type: str, default: ""}
        nodes:
          - {id: n1, prompt: "Outline {state.topic}", outputs: [outline]}
          - {id: n2, prompt: "Draft {state.outline}", outputs: [draft]}
          - id: n3
            prompt: "Polish {state.draft}"
            outputs: [final]
            llm: {fail_on_attempt: [1]}
        edges:
          - {from: START, to: n1}
          - {from: n1, to: n2}
          - {from: n2, to: n3}
          - {from: n3, to: END}
        config: {llm: {provider: mock, cost_per_call_usd: 0.01}}
        """
)
CHAIN = parse_workflow(CHAIN_TEXT)
HEALTHY = parse_workflow(CHAIN_TEXT.replace("llm: {fail_on_attempt: [1]}", "llm: {}"))


async def _failed_chain() -> str:
    detail = await new_service().run_workflow(CHAIN, {"topic": "tides"})
    assert detail.summary.status == "failed" and detail.summary.error_node == "n3"
    return detail.summary.id


async def _count_runs() -> int:
    return await WorkflowRun.count()


async def test_resume_reuses_completed_nodes_and_pays_for_the_failed_one(client: Any) -> None:
    original = await _failed_chain()
    plan = await client.post(
        f"/workflows/{original}/restart",
        data={"from": "failure", "preview": "1"},
        headers={"HX-Request": "true"},
    )
    assert plan.status_code == 200
    assert "Resume run" in plan.text and "2 completed node executions reused" in plan.text
    assert "$0.0200" in plan.text  # saved
    answer = await client.post(
        f"/workflows/{original}/restart", json={"from": "failure"}, headers=JSON
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["restart_mode"] == "resume"
    assert body["reused_nodes"] == ["n1", "n2"]
    assert body["reused_cost_usd"] == 0.02
    new = (await client.get(f"/workflows/{body['run_id']}", headers=JSON)).json()
    assert new["status"] == "completed", new["error"]
    assert new["restart_mode"] == "resume" and new["restarted_from"] == original
    steps = [(s["node_id"], s["status"], s["reused_from"], s["cost_usd"]) for s in new["steps"]]
    assert steps == [
        ("n1", "reused", original, 0.0),
        ("n2", "reused", original, 0.0),
        ("n3", "completed", None, 0.01),
    ]
    assert new["total_cost_usd"] == 0.01
    page = await client.get(f"/workflows/{body['run_id']}")
    assert "resumed from where it stopped" in page.text
    assert f'href="/workflows/{original}">{original[:8]}</a>' in page.text


async def test_resume_from_a_completed_node_runs_it_again(client: Any) -> None:
    original = await _failed_chain()
    answer = await client.post(f"/workflows/{original}/restart", json={"from": "n2"}, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["reused_nodes"] == ["n1"]
    new = (await client.get(f"/workflows/{answer.json()['run_id']}", headers=JSON)).json()
    assert [s["status"] for s in new["steps"]] == ["reused", "completed", "completed"]


async def test_resume_refuses_what_it_cannot_do_and_creates_nothing(client: Any) -> None:
    original = await _failed_chain()
    before = await _count_runs()
    cases = [
        ({"from": "n3"}, "did not complete"),
        ({"from": "nope"}, "not a node"),
        ({"from": "failure", "inputs": {"topic": "x"}}, "cannot be combined"),
    ]
    for body, says in cases:
        response = await client.post(f"/workflows/{original}/restart", json=body, headers=JSON)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "not_resumable"
        assert says in response.json()["error"]
    completed = (await new_service().run_workflow(HEALTHY, {"topic": "x"})).summary
    assert completed.status == "completed"
    again = await client.post(
        f"/workflows/{completed.id}/restart", json={"from": "failure"}, headers=JSON
    )
    assert again.status_code == 400 and "nothing failed" in again.json()["error"]
    assert await _count_runs() == before + 1  # only the run made here


async def test_edited_inputs_are_validated_diffed_and_recorded(client: Any) -> None:
    original = await _failed_chain()
    before = await _count_runs()
    wrong = await client.post(
        f"/workflows/{original}/restart",
        json={"inputs": {"topic": "x", "words": "many"}},
        headers=JSON,
    )
    assert wrong.status_code == 400 and wrong.json()["field"] == "words"
    unknown = await client.post(
        f"/workflows/{original}/restart",
        json={"inputs": {"topic": "x", "colour": 1}},
        headers=JSON,
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "colour"
    missing = await client.post(f"/workflows/{original}/restart", json={"inputs": {}}, headers=JSON)
    assert missing.status_code == 400 and missing.json()["field"] == "topic"
    assert await _count_runs() == before

    edited = {"topic": "storms", "words": 50, "tags": ["sea"]}
    answer = await client.post(
        f"/workflows/{original}/restart", json={"inputs": edited}, headers=JSON
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["inputs_diff"] == [
        {"field": "topic", "before": "tides", "after": "storms"},
        {"field": "words", "before": 100, "after": 50},
        {"field": "tags", "before": [], "after": ["sea"]},
    ]
    new = (await client.get(f"/workflows/{answer.json()['run_id']}", headers=JSON)).json()
    assert new["inputs"] == edited and new["restart_mode"] == "edited"
    assert new["restarted_from"] == original and new["attempt"] == 2
    assert [d["field"] for d in new["inputs_diff"]] == ["topic", "words", "tags"]
    page = await client.get(f"/workflows/{new['id']}")
    assert "restarted with edited inputs" in page.text
    assert "<del>" in page.text and "storms" in page.text


async def test_the_edit_form_is_built_from_the_state_fields(client: Any) -> None:
    original = await _failed_chain()
    page = await client.get(f"/workflows/{original}/edit")
    assert page.status_code == 200
    assert 'name="input.topic"' in page.text and "What to write about" in page.text
    assert 'name="input.words"' in page.text and 'name="input.tags"' in page.text
    # Fields the nodes write are not inputs.
    assert 'name="input.final"' not in page.text
    preview = await client.post(
        f"/workflows/{original}/restart",
        data={"preview": "1", "input.topic": "storms", "input.words": "", "input.tags": "[]"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200, preview.text
    assert "1 changed input" in preview.text and "storms" in preview.text
    assert await WorkflowRun.count().where(WorkflowRun.restarted_from == uuid.UUID(original)) == 0
    bad = await client.post(
        f"/workflows/{original}/restart",
        data={"preview": "1", "input.topic": "x", "input.tags": "[not json"},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 400 and "tags" in bad.text
