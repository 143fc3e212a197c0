"""The contract works outside Python: a TypeScript client runs against a real server.

src/clients/web/test/node-client.test.ts uses the code buf generates from protos/
(protoc-gen-es) and @connectrpc/connect-node over gRPC, straight to the server: it creates
runs, appends typed events (twice, to see idempotency), reports over the bidirectional
Report stream, watches with three disconnects and resumes, and checks status codes. This
test builds it with esbuild and runs it with node's test runner against the `server` fixture.
"""

from __future__ import annotations

import re

from runstream_server.app import RunstreamServer

from .web_support import require_node_packages, run_node


async def test_node_client_creates_reports_watches_with_resume_and_decodes(
    server: RunstreamServer,
) -> None:
    require_node_packages()
    await run_node("scripts/build.mjs", "--node-test")
    output = await run_node(
        "--test",
        "--test-reporter=spec",
        "dist/node-client.test.mjs",
        env={"RUNSTREAM_TARGET": server.target},
    )
    # A runner that found no tests also exits 0: require the four that exist.
    assert re.search(r"\bpass 4\b", output), output
    assert re.search(r"\bfail 0\b", output), output
    for name in (
        "appends typed events idempotently",
        "resumes after the last seq with nothing lost or repeated",
        "bidirectional Report stream",
        "maps errors to gRPC status codes",
    ):
        assert name in output, output
