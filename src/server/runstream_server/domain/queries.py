"""Query parsing shared by the list and watch methods: AIP-160 filters and page tokens.

Page tokens are opaque to clients (AIP-158): a version byte, the position as JSON, and an
HMAC-SHA256 tag over both. A forged, truncated or hand-edited token is INVALID_ARGUMENT
naming ``page_token``, and so is a well-tagged one whose content is not a plain position
(deep nesting, numbers out of range, floats, long strings): the payload is checked before
anything uses it. The key is ``RUNSTREAM_PAGE_TOKEN_KEY`` from the environment when set
(then only servers holding it can make tokens); otherwise a fixed one, so that a token
survives a restart and every replica behind a load balancer accepts the others' tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.fields import control_character
from runstream_server.errors import InvalidArgument
from runstream_server.store.base import RunFilter

_M = TypeVar("_M", bound=Message)

LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
LABEL_KEY_RULE = (
    "ASCII letters, digits, '.', '_', '-'; at most 63 characters; starting with a letter or digit"
)
_FILTER_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_.-]*)\s*(?P<op><=|>=|<|>|=|:)\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))""",
    re.VERBOSE,
)
_TIME_EXAMPLE = 'create_time > "2026-12-01T09:00:00Z"'


_JOINER = re.compile(r"\s*(?P<word>AND|OR)(?:\s+|(?=\())")
_OPEN = re.compile(r"\s*\(\s*")
_CLOSE = re.compile(r"\s*\)")
_STATUS_GROUP = "'status = FAILED OR status = CANCELLED'"
_STATUS_IN_PARENTHESES = "'workflow = \"story\" AND (status = FAILED OR status = CANCELLED)'"


def _terms(text: str) -> Iterator[tuple[re.Match[str], str | None, int]]:
    """The comparisons of a ListRuns filter, in order, each with its bare value (None when
    quoted; a ``)`` that closes a group taken off) and the number of its AND-joined group:
    terms joined by OR share one. Refuses, naming it, what cannot be read as terms."""
    position = group = 0
    joined_by_or = in_parentheses = False
    while position < len(text):
        # Terms are matched one after another, so an AND inside a quoted value stays in it.
        opened = None if joined_by_or else _OPEN.match(text, position)
        position, in_parentheses = (opened.end(), True) if opened else (position, in_parentheses)
        match = _FILTER_TERM.match(text, position)
        end, bare = (match.end(), match["bare"]) if match else (position, None)
        if match and in_parentheses:
            closed = _CLOSE.match(text, end)
            if bare is not None and bare.endswith(")") and len(bare) > 1:
                end, bare, closed = end - 1, bare[:-1], _CLOSE.match(text, end - 1)
            if closed:
                end, in_parentheses = closed.end(), False
        joiner = _JOINER.match(text, end) if match else None
        if match is None or (end < len(text) and joiner is None):
            rest = re.split(r" AND | OR ", text[position:])[0].strip()
            raise InvalidArgument(
                "filter",
                f"cannot parse {rest!r}; expected e.g. "
                "'status = RUNNING AND labels.team = \"growth\"'",
            )
        if in_parentheses and joiner is not None and joiner["word"] == "AND":
            # Said as "cannot parse" the term before the AND, which parses (found in review).
            raise InvalidArgument(
                "filter",
                f"parentheses hold statuses joined by OR, not AND: {_STATUS_IN_PARENTHESES}",
            )
        or_group = joined_by_or or (joiner is not None and joiner["word"] == "OR")
        if or_group and match["field"] != "status":
            raise InvalidArgument(
                "filter", f"OR joins statuses only, in one group, e.g. {_STATUS_GROUP}"
            )
        position = joiner.end() if joiner else end
        joined_by_or = joiner is not None and joiner["word"] == "OR"
        yield match, bare, group
        group += not joined_by_or
    if in_parentheses:
        raise InvalidArgument("filter", f"cannot parse {text!r}: a '(' is not closed")


def parse_filter(text: str) -> RunFilter:
    """Parses the ListRuns filter (AIP-160): `field = value` comparisons joined by AND,
    ``create_time`` compared with ``<``, ``<=``, ``>`` or ``>=`` to an RFC 3339 time, and
    statuses in one group joined by OR, which binds tighter than AND (parentheses around the
    group may be written): ``status = FAILED OR status = CANCELLED AND workflow = "story"``."""
    statuses: set[int] = set()
    status_group: int | None = None
    workflow: str | None = None
    labels: dict[str, str] = {}
    after_us: int | None = None
    before_us: int | None = None
    text = text.strip()
    if not text:
        return RunFilter()
    for match, bare, group in _terms(text):
        name, op = match["field"], match["op"]
        if bare is not None and bare.startswith("'"):
            # Taken as part of the value, single quotes matched nothing, without a word.
            unquoted = bare.strip("'")
            raise InvalidArgument(
                "filter",
                f'{name} {op} {bare}: quote a value with double quotes, {name} {op} "{unquoted}"',
            )
        value = match["quoted"] if match["quoted"] is not None else bare or ""
        value = re.sub(r"\\(.)", r"\1", value)
        if name == "create_time":
            if op in ("=", ":"):
                raise InvalidArgument(
                    "filter", f"compare create_time with <, <=, > or >=, e.g. {_TIME_EXAMPLE}"
                )
            # Bounds in the microseconds runs are created in, from a time in nanoseconds:
            # created after T is after floor(T); at or after T, after ceil(T) - 1.
            nanos = _time_ns(value)
            floor, ceil = nanos // 1000, -(-nanos // 1000)
            if op in (">", ">="):
                bound = floor if op == ">" else ceil - 1
                after_us = bound if after_us is None else max(after_us, bound)
            else:
                bound = ceil if op == "<" else floor + 1
                before_us = bound if before_us is None else min(before_us, bound)
            continue
        if op == ":" and (name in ("status", "workflow") or name.startswith("labels.")):
            # AIP-160's "has": labels.team:* asks whether the label is present, which a run's
            # filter cannot (taken as =, it asked for the value "*" and matched nothing).
            presence = f" (the filter cannot ask whether a label is present, {name}:*)"
            raise InvalidArgument(
                "filter",
                f"{name} is compared with =; ':' is not supported"
                + (presence if name.startswith("labels.") else ""),
            )
        if op != "=" and (name in ("status", "workflow") or name.startswith("labels.")):
            raise InvalidArgument(
                "filter", f"{name} is compared with =; only create_time takes {op}"
            )
        # The names a filter compares are held to the rule of the names they match.
        problem = control_character(value) if name != "status" else None
        if problem is not None:
            raise InvalidArgument("filter", f"the value of {name} {problem}")
        if name == "status":
            key = value.upper()
            key = key if key.startswith("RUN_STATUS_") else f"RUN_STATUS_{key}"
            if key == "RUN_STATUS_UNSPECIFIED" or key not in run_pb2.RunStatus.keys():  # noqa: SIM118
                raise InvalidArgument("filter", f"unknown status {value!r}")
            if status_group not in (None, group):
                raise InvalidArgument(
                    "filter", f"statuses are compared in one OR group, e.g. {_STATUS_GROUP}"
                )
            status_group = group
            statuses.add(run_pb2.RunStatus.Value(key))
        elif name == "workflow":
            if workflow is not None:
                raise InvalidArgument("filter", "workflow can be compared once")
            workflow = value
        elif name.startswith("labels."):
            label = name.removeprefix("labels.")
            if not LABEL_KEY.match(label):
                raise InvalidArgument(
                    "filter", f"{label[:40]!r} is not a valid label key ({LABEL_KEY_RULE})"
                )
            if label in labels:
                raise InvalidArgument("filter", f"{name} can be compared once")
            labels[label] = value
        else:
            raise InvalidArgument(
                "filter",
                f"unknown field {name!r}; use status, workflow, labels.<key> or create_time",
            )
    return RunFilter(
        frozenset(statuses),
        workflow,
        labels,
        created_after_us=after_us,
        created_before_us=before_us,
    )


_OFFSET = re.compile(r"(?:[zZ]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[tT][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?" + _OFFSET.pattern
)
"""ASCII digits alone, and a fraction of at least one: protobuf takes any Unicode digit, a
dot with no fraction, and offsets such as +25:00, +1:00 and +23:99."""


def _time_ns(value: str) -> int:
    """An RFC 3339 time with its offset (``Z`` or ``+02:00``, up to nanoseconds), in
    nanoseconds since 1970."""
    moment = timestamp_pb2.Timestamp()
    try:
        if not _RFC3339.match(value):
            raise ValueError(value)
        # RFC 3339 allows a lower-case t and z. The time as if in UTC first: a valid one
        # that its offset takes past 9999 (or before year 1) is out of range, not misspelt.
        moment.FromJsonString(_OFFSET.sub("Z", value.upper()))
    except ValueError:
        raise InvalidArgument(
            "filter",
            f"create_time: {value[:64]!r} is not an RFC 3339 time with its offset, "
            f"e.g. {_TIME_EXAMPLE}",
        ) from None
    try:
        moment.FromJsonString(value.upper())
    except ValueError:
        raise InvalidArgument(
            "filter",
            f"create_time: {value!r} is outside the times a filter compares, "
            "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z",
        ) from None
    return int(moment.ToNanoseconds())


def page_size(value: int, default: int, field_name: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field_name, "must not be negative")
    return default if value == 0 else min(value, 1000)


_TOKEN_VERSION = b"\x01"
_TAG_BYTES = 16
_TOKEN_KEY = os.environ.get("RUNSTREAM_PAGE_TOKEN_KEY", "").encode() or b"runstream page token"
_NOT_OURS = "is not a page token this server issued; start again from the first page"


def _tag(body: bytes) -> bytes:
    return hmac.new(_TOKEN_KEY, body, hashlib.sha256).digest()[:_TAG_BYTES]


def _plain(values: Iterable[object], nested: bool = False) -> bool:
    """Whether token values are what positions are made of: ints that fit an int64 and
    are not negative, short strings, and (at the top level) short lists of those."""
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | str | list):
            return False
        if isinstance(value, int) and not 0 <= value < 2**63:
            return False
        if isinstance(value, str) and len(value) > 256:
            return False
        if isinstance(value, list) and (nested or len(value) > 4 or not _plain(value, True)):
            return False
    return True


def encode_token(payload: Mapping[str, object]) -> str:
    """An opaque, signed page token for `payload` (which holds its request's ``scope``)."""
    body = _TOKEN_VERSION + json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(body + _tag(body)).decode().rstrip("=")


def decode_token(token: str, scope: str, repeat: str = "filter") -> dict[str, object]:
    """The payload of a token :func:`encode_token` made for `scope`, or InvalidArgument
    (naming `repeat`, what the request must repeat, when the token is another request's)."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("page_token", _NOT_OURS) from None
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if len(raw) <= _TAG_BYTES + 1 or not hmac.compare_digest(tag, _tag(body)):
        raise InvalidArgument("page_token", _NOT_OURS)
    if body[:1] != _TOKEN_VERSION:
        raise InvalidArgument("page_token", "comes from another version of the server")
    try:
        payload = json.loads(body[1:])
    except (ValueError, RecursionError):
        raise InvalidArgument("page_token", _NOT_OURS) from None
    if not (isinstance(payload, dict) and len(payload) <= 8 and _plain(payload.values())):
        raise InvalidArgument("page_token", _NOT_OURS)
    if payload.get("scope") != scope:
        raise InvalidArgument(
            "page_token", f"belongs to another request; repeat the original {repeat}"
        )
    return payload


def matches(run_filter: RunFilter, run: run_pb2.Run) -> bool:
    """Whether a run satisfies a ListRuns/WatchRuns filter (the store's query, in memory)."""
    return run_filter.matches(run)


def newest_first(order_by: str) -> bool:
    """Parses the ListEvents order_by (AIP-132): "seq" or "" oldest first, "seq desc" newest
    first; spaces between and around the words do not matter."""
    words = order_by.split()
    if words in ([], ["seq"]):
        return False
    if words == ["seq", "desc"]:
        return True
    raise InvalidArgument(
        "order_by",
        f'cannot order by {order_by!r}; use "seq" (oldest first, the default) '
        'or "seq desc" (newest first)',
    )


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A parsed ListEvents filter: the kinds to list (empty: every kind) and the window of
    seqs, both bounds exclusive (events with ``after < seq < before``; no upper bound when
    `before` is None)."""

    kinds: frozenset[int] = frozenset()
    after: int = 0
    before: int | None = None

    @property
    def empty(self) -> bool:
        """Whether no seq fits the window (``seq > 5 AND seq < 6``)."""
        return self.before is not None and self.before <= self.after + 1


_SEQ_TERM = re.compile(r"\s*seq\s*(?P<op><=|>=|<|>|=)\s*(?P<value>[0-9]{1,40})\s*")
MAX_SEQ = 2**62
"""Seqs, and positions in page tokens, stay below this."""
_EVENT_AND = re.compile(r"\s+AND(?:\s+|(?=\())")
_EVENT_FILTER_HINT = "expected e.g. 'kind = STEP_PROGRESS' or 'seq > 100'"


def parse_event_filter(text: str) -> EventFilter:
    """Parses the ListEvents filter (AIP-160): `kind = NAME` terms joined by OR, and `seq`
    comparisons (``<``, ``<=``, ``>``, ``>=``, ``=`` a whole number), joined by AND. OR binds
    tighter than AND, as in AIP-160: ``seq > 100 AND kind = THINKING OR kind = MILESTONE``
    lists thinking and milestones after seq 100; parentheses around the OR group may be
    written. Kinds are one OR group; several seq comparisons narrow the window."""
    kinds: frozenset[int] | None = None
    after, before = 0, MAX_SEQ
    if not text.strip():
        return EventFilter()
    for conjunct in _EVENT_AND.split(text.strip()):
        seq = _SEQ_TERM.fullmatch(_unwrapped(conjunct))
        if seq is not None:
            value = int(seq["value"])
            if value >= MAX_SEQ:
                raise InvalidArgument("filter", f"seq {value} is out of range (below 2^62)")
            op = seq["op"]
            if op in (">", ">=", "="):
                after = max(after, value if op == ">" else value - 1)
            if op in ("<", "<=", "="):
                before = min(before, value if op == "<" else value + 1)
            continue
        if _unwrapped(conjunct).strip().lower().startswith("seq"):
            raise InvalidArgument(
                "filter",
                f"cannot parse {conjunct.strip()!r}; expected e.g. 'seq > 100' (seq compared "
                "with <, <=, >, >= or = to a whole number)",
            )
        if kinds is not None:
            raise InvalidArgument(
                "filter",
                "kinds are compared in one OR group, e.g. 'kind = THINKING OR kind = MILESTONE'",
            )
        group = _unwrapped(conjunct)
        if not group.strip():
            raise InvalidArgument(
                "filter", f"cannot parse {conjunct.strip()!r}; {_EVENT_FILTER_HINT}"
            )
        kinds = parse_kinds(group)
    return EventFilter(kinds or frozenset(), after, None if before == MAX_SEQ else before)


def _unwrapped(term: str) -> str:
    """A term without the pair of parentheses around all of it, if there is one (not those
    of ``(kind = A) OR (kind = B)``)."""
    term = term.strip()
    if not (term.startswith("(") and term.endswith(")")):
        return term
    depth = 0
    for char in term[:-1]:
        depth += (char == "(") - (char == ")")
        if depth == 0:  # the first "(" closed before the end
            return term
    return term[1:-1]


def parse_kinds(text: str) -> frozenset[int]:
    """Parses `kind = NAME` terms joined by OR (one group of the ListEvents filter)."""
    kinds: set[int] = set()
    if not text.strip():
        return frozenset()
    for term in re.split(r"\s+OR\s+", text.strip()):
        match = re.fullmatch(
            r"\s*kind\s*(?:=|:)\s*(?:\"([A-Za-z_]+)\"|([A-Za-z_]+))\s*", _unwrapped(term)
        )
        if match is None:
            raise InvalidArgument("filter", f"cannot parse {term.strip()!r}; {_EVENT_FILTER_HINT}")
        written = match[1] or match[2]
        name = written.upper()
        name = name if name.startswith("EVENT_KIND_") else f"EVENT_KIND_{name}"
        if name == "EVENT_KIND_UNSPECIFIED" or name not in event_pb2.EventKind.keys():  # noqa: SIM118
            raise InvalidArgument("filter", f"unknown event kind {written!r}")
        kinds.add(event_pb2.EventKind.Value(name))
    return frozenset(kinds)


_ITEM_OVERHEAD = 8  # a repeated field's tag and length in front of each item, at most


def fitting(sizes: Iterable[int], budget: int) -> int:
    """How many leading items of these encoded sizes fit in `budget` bytes (at least one).

    Every response that gathers many items stops at a byte budget, not only at a count, so
    no combination of items the server accepted can make a response exceed the message
    limit; the rest comes on the next page or message.
    """
    total = count = 0
    for size in sizes:
        total += size + _ITEM_OVERHEAD
        if count and total > budget:
            break
        count += 1
    return count


def chunks(items: Sequence[_M], budget: int) -> Iterator[list[_M]]:
    """`items` split into consecutive lists of at most `budget` bytes (one item at least)."""
    start = 0
    while start < len(items):
        count = fitting((m.ByteSize() for m in items[start:]), budget)
        yield list(items[start : start + count])
        start += count
