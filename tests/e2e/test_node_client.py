"""The contract works outside Python: a TypeScript client runs against a real server.

src/clients/web/test/node-client.test.ts uses the code buf generates from protos/
(protoc-gen-es) and @connectrpc/connect-node over gRPC, straight to the server: it creates
runs, appends typed events (twice, to see idempotency), reports over the bidirectional
Report stream, watches with three disconnects and resumes, and checks status codes. This
test builds it with esbuild and runs it with node's test runner against the `server` fixture.
The README's TypeScript example runs as written too, through a server killed and restarted.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import grpc
import runstream
from runstream import StepSpec
from runstream_server.app import RunstreamServer

from tests.conftest import ServerProcess

from .web_support import WEB, require_node_packages, run_node

README = Path(__file__).resolve().parents[2] / "README.md"
README_TARGET = "127.0.0.1:50051"


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


async def build_readme_example(target: str) -> Path:
    """The README's TypeScript block, pointed at `target`, bundled for Node as the README
    says (esbuild, the block standing in src/clients/web/src/ for its imports)."""
    blocks = re.findall(r"```ts\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one TypeScript example"
    assert README_TARGET in blocks[0]
    outfile = WEB / "dist" / "readme-example.mjs"
    options = {
        "stdin": {
            "contents": blocks[0].replace(README_TARGET, target),
            "resolveDir": str(WEB / "src"),
            "loader": "ts",
        },
        "outfile": str(outfile),
        "bundle": True,
        "platform": "node",
        "format": "esm",
        "logLevel": "warning",
    }
    build = f"const esbuild = await import('esbuild'); await esbuild.build({json.dumps(options)});"
    await run_node("--input-type=module", "-e", build)
    return outfile


async def start_example(example: Path, run_id: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "node", str(example), run_id,
        cwd=WEB, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_readme_example_watches_through_a_server_restart_with_every_event_once(
    server_process: ServerProcess,
) -> None:
    """The example used to name no run (`runId` undefined) and resume nothing; the README
    listed UNAVAILABLE, CANCELED and INTERNAL as the lost connection's codes, missing grpc-web's
    ABORTED. As written now it prints every event once across a killed and restarted server."""
    require_node_packages()
    example = await build_readme_example(server_process.target)
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("node-readme", steps=[StepSpec("draft", "Draft")])
        async with run.step("draft") as step:
            await step.progress(40, "drafting")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
    watcher = await start_example(example, run.run_id)
    assert watcher.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or not lines[-1].startswith(f"{head} "):
                line = (await watcher.stdout.readline()).decode()
                assert line, "".join(lines)
                lines.append(line.strip())
        server_process.kill()  # mid-stream: the watcher's call is cut
        server_process.start()
        async with runstream.connect(server_process.target) as client:
            async with await client.attach_run(run.run_id) as again:
                await again.complete(summary="after the restart")
            final = (await client.get_run(run.run_id)).last_seq
        output, errors = await asyncio.wait_for(watcher.communicate(), 30)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    lines += output.decode().splitlines()
    assert watcher.returncode == 0, "\n".join(lines) + errors.decode()
    # It said it resumed (a bare retry looked the same as a quiet run), and from where.
    assert f"); resuming after {head}" in errors.decode(), errors.decode()
    assert [line.split(" ")[0] for line in lines] == [str(n) for n in range(1, final + 1)], lines
    assert lines[-1] == f"{final} runCompleted", lines


async def test_readme_example_stops_on_ctrl_c_and_waits_as_long_as_a_refusal_asks(
    server_process: ServerProcess,
) -> None:
    """Found in review: aborting the call as the README advised ended it CANCELED, the code a
    killed server gives, and the example resumed it once a second for ever; and it came back
    after 1 s when the server's RESOURCE_EXHAUSTED said (RetryInfo) to wait 5 s."""
    require_node_packages()
    example = await build_readme_example(server_process.target)
    server_process.extra = ("--max-watchers-per-run", "1")
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("node-readme-limits")
        await run.flush()
        held = await start_example(example, run.run_id)  # the run's one watcher
        assert held.stdout is not None
        async with asyncio.timeout(30):
            assert (await held.stdout.readline()).decode().startswith("1 ")
        refused = await start_example(example, run.run_id)
        try:
            assert refused.stderr is not None
            async with asyncio.timeout(30):
                said = (await refused.stderr.readline()).decode()
            assert "ResourceExhausted" in said and "in 5000 ms" in said, said
        finally:
            refused.kill()
            await refused.wait()
        held.send_signal(signal.SIGINT)  # Ctrl-C while the run goes on
        await asyncio.wait_for(held.wait(), 15)
        assert held.returncode == 0
        await run.complete()


async def test_readme_example_gives_up_at_once_on_a_grpc_server_without_runstream(
    tmp_path: Path,
) -> None:
    """A gRPC server without Runstream's services answers UNIMPLEMENTED, which no retry can
    change: the example retried it silently once a second for ever (found in review)."""
    require_node_packages()
    other = grpc.aio.server()  # serves nothing
    port = other.add_insecure_port("127.0.0.1:0")
    await other.start()
    try:
        example = await build_readme_example(f"127.0.0.1:{port}")
        watcher = await start_example(example, "some-run")
        try:
            output, errors = await asyncio.wait_for(watcher.communicate(), 30)
        finally:
            if watcher.returncode is None:  # still retrying: the defect
                watcher.kill()
                await watcher.wait()
    finally:
        await other.stop(0)
    assert watcher.returncode == 1, output.decode() + errors.decode()
    assert "unimplemented" in errors.decode().lower(), errors.decode()
    assert "resuming" not in errors.decode()
