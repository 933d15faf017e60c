"""Log lines as JSON, for those who ship logs to a collector.

The audit events go to the ``tfa_middleware.audit`` logger as a short message (``code_sent
admin/42``) with the event's fields in one extra attribute, ``record.tfa_event``: one key, so no
field can clash with a ``LogRecord`` attribute, and a JSON formatter encodes the fields once
instead of a JSON string inside a JSON string. ``JsonFormatter`` prints any record as one object::

    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,  # keep the loggers already made (tfa_middleware's own)
        "formatters": {"json": {"()": "tfa_middleware.logging.JsonFormatter"}},
        "handlers": {"audit": {"class": "logging.FileHandler", "filename": "audit.log", "formatter": "json"}},
        "loggers": {"tfa_middleware.audit": {"handlers": ["audit"], "level": "INFO"}},
    })
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

EVENT_FIELD = "tfa_event"  # the LogRecord attribute (``extra=``) that holds an audit event's fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the event's fields, if any, then time, level, logger, message
    (and the traceback), which win a clash so every line has the same shape."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, EVENT_FIELD, None) or {})
        fields["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields["level"] = record.levelname
        fields["logger"] = record.name
        fields["message"] = record.getMessage()
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False, default=str)
