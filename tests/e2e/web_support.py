"""Shared pieces of the web tests: the Node tooling, a grpc-web client, and a browser driver.

The grpc-web client speaks the wire format by hand (a 5-byte frame header, then the message
or the trailers), which is exactly what a browser sends through Envoy; the browser driver
runs src/clients/web/scripts/browser-driver.mjs (playwright-core with Debian's Chromium)
and sends it one command per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import ssl
import struct
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "clients" / "web"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def require(condition: bool, what: str) -> None:
    """Skips a test whose tooling is missing on a developer machine; fails it in CI, where
    `make test` installs everything first, so a broken setup cannot pass as skipped."""
    if condition:
        return
    message = f"{what} is missing: run `make setup` (scripts/setup.sh test)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_node_packages() -> None:
    require(shutil.which("node") is not None, "node")
    require((WEB / "node_modules" / ".bin" / "esbuild").exists(), "src/clients/web/node_modules")


def require_chromium() -> None:
    require_node_packages()
    require(CHROMIUM.exists(), str(CHROMIUM))


async def run_node(*args: str, env: Mapping[str, str] | None = None, within: float = 120) -> str:
    """Runs node in src/clients/web without blocking the event loop (an in-process server
    may be serving on it); returns the combined output, failing the test on a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        "node",
        *args,
        cwd=WEB,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"node {' '.join(args)} exited {process.returncode}:\n{text}"
    return text


# --- grpc-web -----------------------------------------------------------------------------

TRAILER_FLAG = 0x80


def frame(message: Message) -> bytes:
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


@dataclass
class GrpcWebCall:
    """One grpc-web call through Envoy: status, headers, then frames as they arrive."""

    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def messages(self) -> Iterator[bytes]:
        """Each message's bytes as soon as its frame is complete; stops at the trailers."""
        while True:
            head = self.response.read(5)
            if len(head) < 5:
                return
            flags, length = struct.unpack(">BI", head)
            body = self.response.read(length)
            if flags & TRAILER_FLAG:
                for line in body.decode().split("\r\n"):
                    if ":" in line:
                        key, value = line.split(":", 1)
                        self.trailers[key.strip().lower()] = value.strip()
                return
            yield body

    def grpc_status(self) -> str | None:
        """The grpc-status: from the trailer frame, or from the headers (trailers-only)."""
        return self.trailers.get("grpc-status") or self.header("grpc-status")

    def close(self) -> None:
        self.connection.close()


def grpc_web_call(
    base_url: str,
    method: str,
    request: Message,
    *,
    origin: str | None = None,
    timeout: float = 30,
    metadata: Mapping[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> GrpcWebCall:
    """Starts a grpc-web call (blocking: run it in a thread next to an in-process server);
    `metadata` adds request headers (authorization), `tls` makes it an HTTPS call."""
    url = urlsplit(base_url)
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        connection = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, timeout=timeout, context=tls
        )
    else:
        connection = http.client.HTTPConnection(
            url.hostname or "127.0.0.1", url.port, timeout=timeout
        )
    headers = {
        **(metadata or {}),
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "accept": "application/grpc-web+proto",
    }
    if origin:
        headers["origin"] = origin
    connection.request("POST", f"/{method}", body=frame(request), headers=headers)
    return GrpcWebCall(connection.getresponse(), connection)


def http_request(
    base_url: str, method: str, path: str, headers: Mapping[str, str]
) -> tuple[int, dict[str, str]]:
    """A plain HTTP request; returns the status and the lower-cased response headers."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        connection.request(method, path, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


# --- the browser -------------------------------------------------------------------------


class BrowserError(AssertionError):
    """A browser command failed (a wait timed out, a selector did not match ...)."""


class Browser:
    """Chromium driven through browser-driver.mjs; every method is one Playwright call."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._next_id = 0

    async def call(self, op: str, **args: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._next_id += 1
        self._process.stdin.write(
            (json.dumps({"id": self._next_id, "op": op, **args}) + "\n").encode()
        )
        await self._process.stdin.drain()
        line = await self._process.stdout.readline()
        if not line:
            raise BrowserError(f"the browser driver exited during {op}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise BrowserError(f"{op} {args}: {answer['error']}")
        return answer["value"]

    async def goto(self, url: str) -> None:
        await self.call("goto", url=url)

    async def wait(self, expression: str, within: float = 30) -> None:
        """Waits (at most `within` seconds) until a JavaScript expression is truthy.

        An expression that meets an element the page has not built yet (a TypeError, such as
        `document.querySelector('.server-panel').dataset` right after `goto`) counts as not
        yet: Playwright ends the wait on the first exception, which made a wait right after
        `goto` race the page's first render (seen once in CI). Other errors still end it.
        """
        guarded = (
            f"(() => {{ try {{ return ({expression}); }} catch (e) {{"
            " if (e instanceof TypeError) return false; throw e; } })()"
        )
        await self.call("wait", expression=guarded, timeout=int(within * 1000))

    async def eval(self, expression: str) -> Any:
        return await self.call("eval", expression=expression)

    async def click(self, selector: str) -> None:
        await self.call("click", selector=selector)

    async def press(self, key: str) -> None:
        """Presses a key ("Enter", "Tab") where the page's focus is, as a person would."""
        await self.call("press", key=key)

    async def keydown(self, key: str) -> None:
        """Holds a key down; another keydown before keyup() is the key repeating."""
        await self.call("keydown", key=key)

    async def keyup(self, key: str) -> None:
        await self.call("keyup", key=key)

    async def accessible(self, selector: str) -> dict[str, str]:
        """What a screen reader says of the element: its role, name and description, from
        Chromium's accessibility tree."""
        said: dict[str, str] = await self.call("ax", selector=selector)
        return said

    async def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        await self.call("screenshot", path=str(path), fullPage=full_page)
        return path

    async def unimplemented(self, method: str) -> None:
        """Calls to `method` ("runstream.v1.RunService/WatchRuns") end UNIMPLEMENTED from
        now on, as on a server that does not offer it."""
        await self.call("unimplemented", method=method)

    async def reply_lost(self, method: str, delay: float) -> None:
        """Calls to `method` reach the server from now on, and their reply is lost on the
        way back `delay` seconds later (as when a proxy drops the connection)."""
        await self.call("replylost", method=method, delayMs=int(delay * 1000))

    async def hang(self, method: str) -> None:
        """Calls to `method` from now on get no answer at all, not even headers, and no error
        either: what a half-open connection looks like to the page."""
        await self.call("hang", method=method)

    async def unhang(self, method: str) -> None:
        """Calls to `method` from now on are answered again (those left hanging stay so)."""
        await self.call("unhang", method=method)

    async def hold(self, method: str) -> None:
        """Calls to `method` from now on wait on their way out, not yet sent to the server,
        until release()."""
        await self.call("hold", method=method)

    async def release(self, method: str) -> None:
        """The calls to `method` held go on to the server, and later ones are sent at once."""
        await self.call("release", method=method)

    async def fastforward(self, seconds: float) -> None:
        """The page's clock, installed by `call("skew", seconds=...)` before the page loads,
        jumps `seconds` ahead, firing the page's timers due meanwhile."""
        await self.call("fastforward", ms=int(seconds * 1000))

    async def serve(self, pattern: str, path: Path) -> None:
        """Requests for URLs matching `pattern` ("**/app.js") are answered with the file at
        `path` from now on (a bundle the test built)."""
        await self.call("serve", pattern=pattern, path=str(path))

    async def calls(self, method: str) -> int:
        """How many calls of `method` ("runstream.v1.RunService/ListEvents") the page has
        made so far."""
        count: int = await self.call("calls", method=method)
        return count

    async def errors(self) -> list[str]:
        """Uncaught page errors and console errors so far."""
        errors: list[str] = await self.call("errors")
        return errors


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    """A fresh Chromium (1440x900) for one test; closed afterwards, whatever happened."""
    require_chromium()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(WEB / "scripts" / "browser-driver.mjs"),
        cwd=WEB,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CHROMIUM": str(CHROMIUM)},
    )
    try:
        yield Browser(process)
    finally:
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write(b'{"id": 0, "op": "close"}\n')
            await process.stdin.drain()
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 10)
        if process.returncode is None:
            process.kill()
            await process.wait()
