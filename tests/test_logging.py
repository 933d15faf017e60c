"""tfa_middleware.logging.JsonFormatter: one JSON object per record, any record."""

from __future__ import annotations

import json
import logging
import sys

from tfa_middleware.logging import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "tfa_middleware",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "%s down",
            "args": ("authy",),
            **extra,
        }
    )


def test_a_plain_record_and_its_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record(exc_info=sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "tfa_middleware", "authy down")
    assert line["exception"].startswith("Traceback")
    assert "RuntimeError: boom" in line["exception"]


def test_the_record_keys_win_a_clash_with_an_event_field() -> None:
    line = json.loads(JsonFormatter().format(_record(tfa_event={"message": "x", "event": "locked"})))
    assert (line["message"], line["event"]) == ("authy down", "locked")
