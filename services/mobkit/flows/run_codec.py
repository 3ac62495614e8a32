"""A stored run as bytes (versioned JSON, exact: :mod:`mobkit.core.jsontext`)."""

from __future__ import annotations

from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import StoreCorruption
from mobkit.flows.definition import FlowDefinition
from mobkit.flows.document import flow_to_entry, parse_flows
from mobkit.flows.records import Parent, RunRecord
from mobkit.flows.run import (
    Failure,
    Run,
    RunState,
    StepRecord,
    StepState,
    TargetResult,
    TurnProof,
)

FORMAT = 1


def encode_record(record: RunRecord) -> bytes:
    parent = record.parent
    return jsontext.encode(
        {
            "format": FORMAT,
            "run": _run(record.run),
            "flows": [flow_to_entry(f) for f in record.flows],
            "created_ms": record.created_ms,
            "updated_ms": record.updated_ms,
            "request_id": record.request_id,
            "labels": dict(record.labels),
            "parent": None if parent is None else [parent.run_id, parent.step_id],
            "events_from": record.events_from,
        }
    ).encode()


def decode_record(data: bytes, where: str) -> RunRecord:
    """The run stored at ``where``; STORE_CORRUPTION when the bytes are not one."""
    try:
        doc = jsontext.decode(data, jsontext.MAX_DEPTH + 8)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown run format {doc.get('format')!r}")
        parent = doc["parent"]
        return RunRecord(
            run=_run_back(doc["run"]),
            flows=_flows_back(doc["flows"]),
            created_ms=int(doc["created_ms"]),
            updated_ms=int(doc["updated_ms"]),
            request_id=doc["request_id"],
            labels=dict(doc["labels"]),
            parent=None if parent is None else Parent(parent[0], parent[1]),
            events_from=int(doc.get("events_from", 0)),
        )
    except (jsontext.NotJson, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise StoreCorruption(f"{where}: not a flow run: {exc}") from exc


def _flows_back(entries: list[Any]) -> tuple[FlowDefinition, ...]:
    """The pinned definitions, checked by the document's own parser (their identities are
    the ones they name: the roster may have moved on)."""
    named = [
        step["identity"]
        for entry in entries
        for step in entry.get("steps", [])
        if isinstance(step.get("identity"), str)
    ]
    problems: list[str] = []
    flows = parse_flows(entries, named, lambda detail, **_: problems.append(detail))
    if problems:
        raise ValueError("; ".join(problems))
    return flows


def _run(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "flow_id": run.flow_id,
        "roster_revision": run.roster_revision,
        "input": run.input,
        "state": run.state.value,
        "depth": run.depth,
        "failure": _failure(run.failure),
        "steps": {k: _step(r) for k, r in run.steps.items()},
        "origin": run.origin,
        "correlation_id": run.correlation_id,
        "idempotency_key": run.idempotency_key,
    }


def _run_back(doc: dict[str, Any]) -> Run:
    return Run(
        run_id=doc["run_id"],
        flow_id=doc["flow_id"],
        roster_revision=int(doc["roster_revision"]),
        input=doc["input"],
        state=RunState(doc["state"]),
        depth=int(doc["depth"]),
        failure=_failure_back(doc["failure"]),
        steps={k: _step_back(v) for k, v in doc["steps"].items()},
        origin=doc.get("origin", "flow"),
        correlation_id=doc.get("correlation_id"),
        idempotency_key=doc.get("idempotency_key"),
    )


def _failure(failure: Failure | None) -> Any:
    if failure is None:
        return None
    return {"reason": failure.reason, "message": failure.message, "step_id": failure.step_id}


def _failure_back(doc: Any) -> Failure | None:
    return None if doc is None else Failure(doc["reason"], doc["message"], doc["step_id"])


def _step(record: StepRecord) -> dict[str, Any]:
    return {
        "state": record.state.value,
        "message": record.message,
        "targets": list(record.targets),
        "attempts": dict(record.attempts),
        "results": {k: _result(r) for k, r in record.results.items()},
        "failure": _failure(record.failure),
    }


def _step_back(doc: dict[str, Any]) -> StepRecord:
    return StepRecord(
        state=StepState(doc["state"]),
        message=doc["message"],
        targets=tuple(doc["targets"]),
        attempts={k: int(v) for k, v in doc["attempts"].items()},
        results={k: _result_back(v) for k, v in doc["results"].items()},
        failure=_failure_back(doc["failure"]),
    )


def _result(result: TargetResult) -> dict[str, Any]:
    out: dict[str, Any] = {"output": result.output, "structured_output": result.structured_output}
    if (p := result.proof) is not None:
        out["proof"] = [p.session_id, p.fencing_token, p.checkpoint_version, p.output_truncated]
    return out


def _result_back(doc: dict[str, Any]) -> TargetResult:
    proof = doc.get("proof")
    return TargetResult(
        doc["output"],
        doc["structured_output"],
        None
        if proof is None
        else TurnProof(proof[0], int(proof[1]), int(proof[2]), bool(proof[3])),
    )
