"""Tokens and keys never appear in logs: failed auth is logged without the token, and the
formatters blot out bearer tokens that slip into a message or traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from security_support import Suite

from mobkit.gen.lease.v1 import lease_service_pb2 as lease_pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.server.logs import JsonFormatter, TextFormatter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged (INFO and up) as the JSON lines ``mobkit serve`` writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_failed_auth_is_logged_without_the_token(suite: Suite, json_log: io.StringIO) -> None:
    request = lease_pb.AcquireLeasesRequest(identities=["planner"], runtime_instance="x")
    unknown = "mbk_" + "s3cret" * 6
    for token in (unknown, suite.tokens.expired, suite.tokens.read):
        stub = lease_grpc.LeaseServiceStub(suite.channel(suite.client_tls(), token=token))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.AcquireLeases(request, timeout=5)
    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    failures = [r for r in lines if r["method"].endswith("/AcquireLeases")]
    assert len(failures) == 3, text  # the refusals are logged, with their request ids...
    assert all(r["request_id"] != "-" for r in failures)
    assert any("expired" in r["msg"] for r in failures)
    for secret in (unknown, suite.tokens.expired, suite.tokens.read, suite.tokens.admin):
        assert secret not in text  # ...but never the token
    assert suite.ca.server_key.read_text().splitlines()[1] not in text


def test_json_formatter_masks_tokens_in_messages_and_tracebacks(json_log: io.StringIO) -> None:
    log = logging.getLogger("mobkit.test")
    token = "mbk_" + "x" * 43
    log.warning("client sent authorization: Bearer %s", "opaque-value-123")
    log.warning("token %s was rejected", token)
    try:
        raise RuntimeError(f"header Bearer {token}")
    except RuntimeError:
        log.exception("boom")
    text = json_log.getvalue()
    assert "opaque-value-123" not in text and token not in text
    assert "Bearer ***" in text and "mbk_***" in text


def test_identity_and_fencing_token_extras_are_kept(json_log: io.StringIO) -> None:
    logging.getLogger("mobkit.test").info(
        "checkpoint saved", extra={"identity": "planner", "fencing_token": 42, "session_id": "s-1"}
    )
    record = json.loads(json_log.getvalue().splitlines()[-1])
    assert record["identity"] == "planner"
    assert record["fencing_token"] == 42  # a fencing token is a revision, not a secret
    assert record["session_id"] == "s-1"


def test_text_formatter_masks_bearer_tokens() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "auth: Bearer abc.def", None, None)
    assert "abc.def" not in TextFormatter("%(message)s").format(record)
