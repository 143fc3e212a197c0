"""Server logging: plain text by default, one JSON object per line with ``--log-format json``.

Every record logged while a request is handled carries that request's context (the method,
and the run id when the request names one), set by the request interceptor in context
variables; the request's own summary line adds its status code and duration. JSON lines have
``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message`` and, when known,
``run_id``, ``method``, ``code``, ``duration_ms``, ``principal`` and ``tenant`` (the verified
caller, when tokens are required), ``peer`` and ``exception``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

from runstream_server.auth import principal as auth_principal

__all__ = ["LOG_FORMATS", "JsonFormatter", "RequestContextFilter", "configure", "request_scope"]

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The request being handled, for every record logged on its behalf.
_method: contextvars.ContextVar[str | None] = contextvars.ContextVar("rs_method", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("rs_run_id", default=None)

# Record attributes the JSON formatter copies when present, in this order.
_FIELDS: Final = ("run_id", "method", "code", "duration_ms", "principal", "tenant", "peer")


def request_scope(method: str, run_id: str | None) -> None:
    """Marks the current task as handling `method` (for `run_id`); tasks copy it onward."""
    _method.set(method)
    if run_id:
        _run_id.set(run_id)


def set_run_id(run_id: str) -> None:
    """Names the run once a streaming request reveals it (its first message)."""
    if run_id:
        _run_id.set(run_id)


class RequestContextFilter(logging.Filter):
    """Adds the current request's method and run id to records that do not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "method", None) is None:
            record.method = _method.get()
        if getattr(record, "run_id", None) is None:
            record.run_id = _run_id.get()
        caller = auth_principal.current()
        if caller is not None and getattr(record, "principal", None) is None:
            record.principal = caller.subject
            record.tenant = caller.tenant or None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; fields without a value are left out."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    """The text format, with the request's run id and method appended when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{name}={getattr(record, name)}" for name in ("run_id", "method")]
        tags = [tag for tag in tags if not tag.endswith("=None")]
        if tags and "\n" not in line:
            line += " [" + " ".join(tags) + "]"
        return line


def configure(level: str = "info", fmt: str = "text") -> None:
    """Sends the root logger's records to stderr, as text or JSON lines."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
