"""Query parsing shared by the list and watch methods: AIP-160 filters and page tokens."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

from runstream.v1 import event_pb2, run_pb2

from runstream_server.errors import InvalidArgument
from runstream_server.store.base import RunFilter

LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_FILTER_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=|:)\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))""",
    re.VERBOSE,
)


_AND = re.compile(r"\s*AND\s+")


def parse_filter(text: str) -> RunFilter:
    """Parses the ListRuns filter: `field = value` comparisons joined by AND."""
    statuses: set[int] = set()
    workflow: str | None = None
    labels: dict[str, str] = {}
    text = text.strip()
    if not text:
        return RunFilter()
    position = 0
    while position < len(text):
        # Terms are matched one after another, so an AND inside a quoted value stays in it.
        match = _FILTER_TERM.match(text, position)
        joiner = _AND.match(text, match.end()) if match else None
        if match is None or (match.end() < len(text) and joiner is None):
            rest = text[position:].split(" AND ")[0].strip()
            raise InvalidArgument(
                "filter",
                f"cannot parse {rest!r}; expected e.g. "
                "'status = RUNNING AND labels.team = \"growth\"'",
            )
        position = joiner.end() if joiner else match.end()
        name = match["field"]
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        value = re.sub(r"\\(.)", r"\1", value)
        if name == "status":
            key = value.upper()
            key = key if key.startswith("RUN_STATUS_") else f"RUN_STATUS_{key}"
            if key == "RUN_STATUS_UNSPECIFIED" or key not in run_pb2.RunStatus.keys():  # noqa: SIM118
                raise InvalidArgument("filter", f"unknown status {value!r}")
            if statuses:
                raise InvalidArgument("filter", "status can be compared once")
            statuses.add(run_pb2.RunStatus.Value(key))
        elif name == "workflow":
            workflow = value
        elif name.startswith("labels."):
            label = name.removeprefix("labels.")
            if not LABEL_KEY.match(label):
                raise InvalidArgument("filter", f"invalid label key {label!r}")
            labels[label] = value
        else:
            raise InvalidArgument(
                "filter", f"unknown field {name!r}; use status, workflow or labels.<key>"
            )
    return RunFilter(frozenset(statuses), workflow, labels)


def page_size(value: int, default: int, field_name: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field_name, "must not be negative")
    return default if value == 0 else min(value, 1000)


def encode_token(payload: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def decode_token(token: str, scope: str) -> dict[str, object]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
    if not isinstance(payload, dict) or payload.get("scope") != scope:
        raise InvalidArgument(
            "page_token", "belongs to another request; repeat the original filter"
        )
    return payload


def matches(run_filter: RunFilter, run: run_pb2.Run) -> bool:
    """Whether a run satisfies a ListRuns/WatchRuns filter (the store's query, in memory)."""
    if run_filter.statuses and run.status not in run_filter.statuses:
        return False
    if run_filter.workflow is not None and run.workflow != run_filter.workflow:
        return False
    return all(run.labels.get(k) == v for k, v in run_filter.labels.items())


def parse_kinds(text: str) -> frozenset[int]:
    """Parses the ListEvents filter: `kind = NAME` terms joined by OR."""
    kinds: set[int] = set()
    if not text.strip():
        return frozenset()
    for term in re.split(r"\s+OR\s+", text.strip()):
        match = re.fullmatch(r"\s*kind\s*(?:=|:)\s*\"?([A-Za-z_]+)\"?\s*", term)
        if match is None:
            raise InvalidArgument(
                "filter", f"cannot parse {term.strip()!r}; expected e.g. 'kind = STEP_PROGRESS'"
            )
        name = match[1].upper()
        name = name if name.startswith("EVENT_KIND_") else f"EVENT_KIND_{name}"
        if name == "EVENT_KIND_UNSPECIFIED" or name not in event_pb2.EventKind.keys():  # noqa: SIM118
            raise InvalidArgument("filter", f"unknown event kind {match[1]!r}")
        kinds.add(event_pb2.EventKind.Value(name))
    return frozenset(kinds)
