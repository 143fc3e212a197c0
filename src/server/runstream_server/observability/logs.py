"""Server logging: plain text by default, one JSON object per line with ``--log-format json``.

Every record logged while a request is handled carries that request's context (the method,
and the run id when the request names one), set by the request interceptor in context
variables; the request's own summary line adds its status code and duration. JSON lines have
``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message`` and, when known,
``run_id``, ``method``, ``code``, ``duration_ms``, ``principal`` and ``tenant`` (the verified
caller, when tokens are required), ``peer`` and ``exception``.

A text record's own line (its message, with whatever a request put in it, and the run id and
method appended) is one line whatever the request held: control characters in it are written
as backslash escapes (``\\n``, ``\\r``, ``\\x1b``), so a run id holding a newline cannot
forge a second log line, nor an escape sequence rewrite the terminal showing the log. A
traceback still follows on lines of its own. JSON lines escape them already.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final

from runstream_server import principal

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "RequestContextFilter",
    "TextFormatter",
    "configure",
    "request_scope",
]

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The request being handled, for every record logged on its behalf.
_method: contextvars.ContextVar[str | None] = contextvars.ContextVar("rs_method", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("rs_run_id", default=None)

# C0 and C1 controls, DEL and the Unicode line and paragraph separators: what terminals, log
# viewers or str.splitlines() take for a line break or an escape sequence.
_CONTROLS: Final = {
    code: chr(code).encode("unicode_escape").decode("ascii")
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}

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
        caller = principal.current()
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


class TextFormatter(logging.Formatter):
    """The text format, with the request's run id and method appended when there is one, and
    control characters escaped on the record's own line (see the module docstring)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        tags = [f"{name}={getattr(record, name, None)}" for name in ("run_id", "method")]
        tags = [tag for tag in tags if not tag.endswith("=None")]
        if tags:
            line += " [" + " ".join(tags) + "]"
        return line.translate(_CONTROLS)


class ClientGoneFilter(logging.Filter):
    """grpcio logs, at ERROR with a traceback, every stream response it could not send because
    the client had gone (its connection closed while the stream was behind): a watcher that
    closed a laptop lid is not a server error. Such records are kept at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage().startswith(
            "ExecuteBatchError raised in core by servicer method"
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class SaidOnce(logging.Filter):
    """Lets a logger's first record of each level through, then one every `every` seconds
    saying how many like it were held back meanwhile: a fault that repeats every few seconds
    (a trace collector down) is said, not written 17,000 times a day."""

    def __init__(self, every: float = 600.0) -> None:
        super().__init__()
        self._every = every
        self._next: dict[int, float] = {}
        self._held: dict[int, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        level = record.levelno
        if now < self._next.get(level, 0.0):
            self._held[level] = self._held.get(level, 0) + 1
            return False
        held = self._held.pop(level, 0)
        if held:
            minutes = self._every / 60
            record.msg = f"{record.getMessage()} ({held} more like it in {minutes:g} min)"
            record.args = ()
        self._next[level] = now + self._every
        return True


def configure(level: str = "info", fmt: str = "text") -> None:
    """Sends the root logger's records to stderr, as text or JSON lines."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # gRPC's own DEBUG lines ("[_cygrpc] Loaded running loop", on every call) are about
    # grpcio, not the server: debug level is the server's, and gRPC's warnings still show.
    grpc_level = max(logging.INFO, logging.getLevelName(level.upper()))
    logging.getLogger("grpc").setLevel(grpc_level)
    logging.getLogger("grpc._cython.cygrpc").addFilter(ClientGoneFilter())
