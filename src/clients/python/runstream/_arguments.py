"""The server's rules for a producer's events, checked on the arguments of the reporting call.

The server checks every event a producer sends (``runstream_server.domain.fields``: sizes,
enum values, signs, finite numbers, times and durations; ``runstream_server.domain.events``:
each kind's required texts, ids and ranges) and refuses a bad one with INVALID_ARGUMENT. By
then the call that reported it has long returned: the refusal surfaces at the next
``flush()``, naming the event's place in a batch (``events[2].step_progress.percent``). The
event builders (:mod:`runstream._event_builders`) run these checks first, so a bad argument
raises InvalidArgumentError at the call, named as the caller passed it (``percent: must be
between 0 and 100, got 150``), with nothing queued. The server keeps its own checks (it trusts no
client); what only the server can know (a step the run does not have, a milestone already
fired, the run's size limits) stays its refusal.

Each limit below is the server's, named once here (the SDK does not import the server):
``tests/clients/test_arguments.py`` fails when the two drift apart.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from runstream._errors import InvalidArgumentError

__all__ = [
    "ID_CHARS",
    "LONG_TEXT_CHARS",
    "NAME_CHARS",
    "STRUCT_BYTES",
    "TEXT_CHARS",
    "count",
    "duration",
    "entries",
    "finite",
    "flag",
    "identifier",
    "key_prefix",
    "line",
    "member",
    "moment",
    "number",
    "text",
    "texts",
]

_T = TypeVar("_T")

# --- the server's limits --------------------------------------------------------------------

# runstream_server.domain.fields: ID, NAME, TEXT, LONG_TEXT, STRUCT and NAMES, the limits its
# FIELD_LIMITS table gives each field of the producer's events.
ID_CHARS = 128
NAME_CHARS = 256
TEXT_CHARS = 4096
LONG_TEXT_CHARS = 65_536
STRUCT_BYTES = 1024 * 1024
NAMES_ITEMS = 100
# fields' FIELD_LIMITS for the maps of MetricsUpdate (values, units) and StepCompleted.metrics.
METRICS_ITEMS = 256
METRIC_NAME_CHARS = 128
UNIT_CHARS = 32
# fields' FIELD_LIMITS for ItemProgress.by_stage and WorkflowStateChange.pipeline_status.
STAGES_ITEMS = 100
STAGE_NAME_CHARS = 128
PIPELINE_ITEMS = 100
PIPELINE_NAME_CHARS = 256
# fields' FIELD_LIMITS for Artifact.kind and Artifact.uri.
ARTIFACT_KIND_CHARS = 64
URI_CHARS = 2048
# fields' FIELD_LIMITS for DecisionRequested.prompt and .options.
PROMPT_CHARS = 16_384
OPTIONS_ITEMS = 100

# runstream_server.domain.events.check_id: the shape of every id the server checks.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
# runstream_server.domain.events.KINDS: the ranges of StepProgress.percent and
# Thinking.confidence.
PERCENT_RANGE = (0.0, 100.0)
SERVER_KEY_PREFIX = "runstream."  # idempotency keys the server writes under (deadlines)
CONFIDENCE_RANGE = (0.0, 1.0)
# runstream_server.domain.fields._check_duration: 0 to 100 years.
MAX_DURATION_SECONDS = 3_155_760_000
# runstream_server.domain.fields._check_timestamp: times from 1970 (a datetime cannot pass
# the year 9999 the server ends at).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# runstream_server.domain.events.MAX_DECISION_TIMEOUT_SECONDS: 366 days.
MAX_DECISION_TIMEOUT_SECONDS = 366 * 24 * 3600
# runstream_server.domain.queries.MAX_SEQ: the seqs a ListEvents filter compares, below 2^62.
MAX_SEQ = 2**62 - 1
# runstream_server.domain.watching_runs.MAX_INITIAL_ENDED_LIMIT: the most ended runs a
# WatchRuns stream's initial state may ask for.
MAX_INITIAL_ENDED_LIMIT = 100_000

# runstream_server.domain.fields._CONTROL: what no single-line name (every string field but
# the free texts: messages, descriptions, reasons, analysis, streamed text, the prompt) and no
# map key may hold: C0 controls (tab and newline too), DEL, C1 controls, the line and
# paragraph separators and the bidi controls. Free text takes them all.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
# runstream_server.domain.events.MAX_KEY_LENGTH is ID_CHARS: an idempotency key
# "<key_prefix>:<n>" must fit it for any counter an int64 holds (":" and 19 digits).
KEY_PREFIX_CHARS = ID_CHARS - 20

# Not the server's: what its integer fields can carry at all (int64, int32 for attempts).
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def _refuse(name: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name}: {problem}")


# --- one value ------------------------------------------------------------------------------


def text(name: str, value: object, most: int, *, required: bool = False) -> str:
    """A string of at most ``most`` characters; with ``required``, not blank either. Free
    text: control characters allowed (names go through :func:`line`)."""
    if not isinstance(value, str):
        raise _refuse(name, f"must be a string, got {value!r:.60}")
    if required and not value.strip():
        raise _refuse(name, "is required")
    if len(value) > most:
        raise _refuse(name, f"is {len(value)} characters; the limit is {most} characters")
    return value


def line(name: str, value: object, most: int, *, required: bool = False) -> str:
    """A single-line name: a :func:`text` with no control character (see CONTROL)."""
    return _one_line(name, text(name, value, most, required=required))


def _one_line(name: str, value: str) -> str:
    found = CONTROL.search(value)
    if found is not None:
        raise _refuse(
            name,
            f"must not contain control characters (U+{ord(found[0]):04X} at {found.start()})",
        )
    return value


def key_prefix(value: str | None) -> str | None:
    """The prefix of a reporter's idempotency keys (None: the SDK generates one), checked
    before the run is created or attached: keys must stay names of at most ID_CHARS."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _refuse("key_prefix", "must be a non-empty string (None generates one)")
    if value.startswith(SERVER_KEY_PREFIX):
        raise _refuse("key_prefix", f"must not start with {SERVER_KEY_PREFIX!r} (the server's)")
    if len(value) > KEY_PREFIX_CHARS:
        raise _refuse(
            "key_prefix",
            f"is {len(value)} characters; the limit is {KEY_PREFIX_CHARS}, so that the keys "
            f'"<key_prefix>:<n>" stay within {ID_CHARS}',
        )
    return _one_line("key_prefix", value)


def identifier(name: str, value: object, *, required: bool = True) -> str:
    """A valid id (see ID_PATTERN); empty only when not ``required``."""
    if not isinstance(value, str):
        raise _refuse(name, f"must be a string, got {value!r:.60}")
    if not value:
        if required:
            raise _refuse(name, "is required")
        return value
    if not ID_PATTERN.match(value):
        raise _refuse(
            name,
            f"{value[:40]!r} is not a valid id (ASCII letters, digits, '.', '_', '-'; "
            f"at most {ID_CHARS} characters; starting with a letter or digit)",
        )
    return value


def finite(name: str, value: object) -> float:
    """``value`` as a float, when it is a finite number (Decimal and numpy numbers are; True
    and False, ints to Python, are not: ``progress(True)`` was 1 %)."""
    if not isinstance(value, str | bytes | bool):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            if math.isfinite(number):
                return number
    raise _refuse(name, f"must be a finite number, got {value!r:.60}")


def number(name: str, value: object, low: float, high: float = math.inf) -> float:
    """A finite number from ``low`` to ``high``, worded as the server words it."""
    result = finite(name, value)
    if not low <= result <= high:
        # Quoted as given where rounding would put it in range (100.0001 is not "100").
        got = repr(result) if f"{result:g}" in (f"{low:g}", f"{high:g}") else f"{result:g}"
        if high == math.inf:
            raise _refuse(name, f"must be at least {low:g}, got {got}")
        raise _refuse(name, f"must be between {low:g} and {high:g}, got {got}")
    return result


def count(name: str, value: object, most: int = INT64_MAX) -> int:
    """A whole number from 0 to ``most`` (numpy integers are; 2.0, "2" and True are not)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        result = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise _refuse(name, f"must be a whole number, got {value!r:.60}") from None
    if result < 0:
        raise _refuse(name, f"must not be negative, got {result}")
    if result > most:
        raise _refuse(name, f"must be at most {most}, got {result}")
    return result


_E = TypeVar("_E", bound=enum.IntEnum)


def member(name: str, value: object, cls: type[_E], *, required: bool = False) -> _E:
    """A value of the enum ``cls``; with ``required``, not its UNSPECIFIED (0)."""
    try:
        result = cls(value)  # type: ignore[arg-type]  # any value: refused below if no member
    except (TypeError, ValueError):
        raise _refuse(name, f"{value!r:.60} is not a known {cls.__name__} value") from None
    if required and result == 0:
        raise _refuse(name, f"is required (any {cls.__name__} but UNSPECIFIED)")
    return result


def flag(name: str, value: object) -> bool:
    """True or False."""
    if not isinstance(value, bool):
        raise _refuse(name, f"must be True or False, got {value!r:.60}")
    return value


def duration(name: str, value: timedelta | float | None) -> timedelta | None:
    """Seconds or a timedelta, as a timedelta from 0 to 100 years; None stays None."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else finite(name, value)
    if not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise _refuse(name, f"must be a non-negative duration of at most 100 years, got {value}")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def moment(name: str, value: object) -> datetime | None:
    """A datetime from 1970 on (a naive one is taken as UTC); None stays None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _refuse(name, f"must be a datetime, got {value!r:.60}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if aware < EPOCH:
        raise _refuse(name, f"must be a valid time between 1970 and 9999, got {value}")
    return aware


# --- several values -------------------------------------------------------------------------


def texts(name: str, values: Iterable[str], most: int = NAMES_ITEMS) -> list[str]:
    """A list of at most ``most`` names (factors, agents, stages) of NAME_CHARS each."""
    if isinstance(values, str):  # iterating "planner" would give "p", "l", ...
        raise _refuse(name, f"must be a list of strings, not one string {values[:40]!r}")
    try:
        items = list(values)
    except TypeError:
        raise _refuse(name, f"must be a list of strings, got {values!r:.60}") from None
    if len(items) > most:
        raise _refuse(name, f"has {len(items)} entries; the limit is {most}")
    return [line(f"{name}[{i}]", item, NAME_CHARS) for i, item in enumerate(items)]


def entries(
    name: str,
    values: Mapping[str, Any] | None,
    check: Callable[[str, Any], _T],
    *,
    most: int,
    key_chars: int,
    required: bool = False,
    named: bool = True,
) -> dict[str, _T]:
    """A map of at most ``most`` entries whose keys are strings of at most ``key_chars``
    characters (with ``named``, not blank), each value passed through
    ``check(f"{name}[key]", value)``; with ``required``, at least one entry."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise _refuse(name, f"must be a mapping, got {values!r:.60}")
    if required and not values:
        raise _refuse(name, "at least one entry is required")
    if len(values) > most:
        raise _refuse(name, f"has {len(values)} entries; the limit is {most}")
    checked = {}
    for key, value in values.items():
        if not isinstance(key, str) or (named and not key.strip()):
            raise _refuse(name, f"keys must be non-blank strings, got {key!r:.60}")
        if len(key) > key_chars:
            raise _refuse(name, f"a key is {len(key)} characters; the limit is {key_chars}")
        _one_line(f"{name}[{key!r}]", key)  # every key is a name, whatever its values
        checked[key] = check(f"{name}[{key!r}]", value)
    return checked
