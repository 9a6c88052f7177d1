"""Log lines are JSON with who logged them and the ids of what was handled."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

from titan_actors.runtime.logs import JsonFormatter, handled, handling, install_context


@dataclass(frozen=True)
class _Submit:
    signal_id: str
    client_order_id: str


def test_a_record_names_its_worker_role_and_the_ids_of_the_message_being_handled() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    factory = logging.getLogRecordFactory()
    try:
        install_context("core")
        context = handling("venue:paper", _Submit("sig-1", "tt123"))
        try:
            logger.warning("venue %s: something about %s", "paper", "sig-1")
        finally:
            handled(context)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("outside any handler")
    finally:
        logging.setLogRecordFactory(factory)
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["ts"].endswith("Z") and inside["level"] == "WARNING"
    assert (inside["worker"], inside["role"], inside["signal_id"], inside["client_order_id"]) == (
        "core", "venue:paper", "sig-1", "tt123")
    assert inside["message"] == "venue paper: something about sig-1"
    assert "role" not in outside and "signal_id" not in outside and outside["worker"] == "core"
    assert "ValueError: boom" in outside["exc"], "the traceback is kept"
