"""The README's SDK examples run as written and do what the README says.

The examples live in README.md only, each fenced block preceded by a
``<!-- readme-example: NAME -->`` marker. Each runs as its own Python process, as a reader
would run it, against a real server (its address substituted for the README's): the
producer reports a run, the watcher replays it and prints the final snapshot.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from runstream_server.app import RunstreamServer

ROOT = Path(__file__).resolve().parents[2]
README_TARGET = "127.0.0.1:50051"
EXAMPLE_BLOCK = re.compile(
    r"<!-- readme-example: (?P<name>[\w-]+) -->\s*```python\n(?P<body>.*?)```", re.S
)


def readme_examples() -> dict[str, str]:
    return {m["name"]: m["body"] for m in EXAMPLE_BLOCK.finditer((ROOT / "README.md").read_text())}


async def run_example(tmp_path: Path, name: str, target: str, *args: str) -> str:
    """Runs one README example with the test server's address; returns its stdout."""
    source = readme_examples()[name]
    assert README_TARGET in source, f"example {name} does not connect to {README_TARGET}"
    script = tmp_path / f"{name}.py"
    script.write_text(source.replace(README_TARGET, target))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args,
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"README example {name} failed:\n{stderr.decode()}"
    return stdout.decode()


def test_the_readme_has_every_example() -> None:
    assert set(readme_examples()) == {
        "producer",
        "watcher",
        "langgraph",
        "openai-agents",
        "agui",
    }


async def test_producer_then_watcher_examples(server: RunstreamServer, tmp_path: Path) -> None:
    produced = await run_example(tmp_path, "producer", server.target)
    match = re.search(r"^run id: (\S+)$", produced, flags=re.MULTILINE)
    assert match, f"the producer example printed no run id:\n{produced}"

    watched = (await run_example(tmp_path, "watcher", server.target, match[1])).splitlines()
    *event_lines, snapshot = watched
    seqs = [int(line.split()[0]) for line in event_lines]
    kinds = [line.split()[1] for line in event_lines]
    assert seqs == list(range(1, len(seqs) + 1)), watched
    assert kinds[0] == "RUN_CREATED" and kinds[-1] == "RUN_COMPLETED", watched
    for kind in ("STEP_STARTED", "STEP_PROGRESS", "ARTIFACT_PRODUCED", "TEXT_DELTA"):
        assert kind in kinds, watched
    assert kinds.count("STEP_COMPLETED") == 2, watched
    assert snapshot == "SUCCEEDED 100%"


async def test_langgraph_example_asks_and_finishes_with_the_answer(
    server: RunstreamServer, tmp_path: Path
) -> None:
    """The LangGraph example waits at its interrupt until a viewer answers."""
    import runstream

    from tests.clients.integrations.extras import require_extra

    require_extra("langgraph", "langchain")

    source = readme_examples()["langgraph"]
    script = tmp_path / "langgraph_example.py"  # not langgraph.py: it would shadow the package
    script.write_text(source.replace(README_TARGET, server.target))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.fullmatch(r"run id: (\S+)\n", first)
        assert match, first
        run_id = match[1]
        async with runstream.connect(server.target) as client:
            async with client.interact([run_id], viewer="ana") as interaction:
                prompt = await asyncio.wait_for(anext(interaction), 60)
                assert isinstance(prompt, runstream.DecisionPrompt)
                assert prompt.decision.prompt == "Publish the draft?"
                await interaction.answer(run_id, prompt.decision.decision_id, "rework")
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            run = await client.get_run(run_id)
            steps = await client.list_steps(run_id)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == "verdict: rework\n"
    assert run.status.name == "SUCCEEDED"
    assert run.result_summary == "Three launch ideas for Runstream"
    assert [(s.step_id, s.status.name) for s in steps] == [
        ("draft", "SUCCEEDED"),
        ("review", "SUCCEEDED"),
    ]


async def test_openai_agents_example_reports_both_agents(
    server: RunstreamServer, tmp_path: Path
) -> None:
    """Both agents' steps, models, the writer's tool call and answer, and the tokens of the
    three model calls: what the README says the processor reports."""
    import runstream

    from tests.clients.integrations.extras import require_extra

    require_extra("agents", "openai-agents")
    output = await run_example(tmp_path, "openai-agents", server.target)
    match = re.match(r"run id: (\S+)\n(.*)\n", output)
    assert match, output
    assert match[2] == "Order A-17 shipped on Monday."
    async with runstream.connect(server.target) as client:
        steps = await client.list_steps(match[1])
        events = [e async for e in client.list_events(match[1])]
        run = await client.get_run(match[1])
    assert [(s.step_id, s.status.name) for s in steps] == [
        ("Triage", "SUCCEEDED"),
        ("Writer", "SUCCEEDED"),
    ]
    activity = [e.payload for e in events if e.kind == runstream.EventKind.AGENT_ACTIVITY]
    assert activity[0].data["to_agent"] == "Writer"  # type: ignore[union-attr]
    assert [a.data.get("tool") for a in activity[1:]] == ["lookup_order", "lookup_order"]  # type: ignore[union-attr]
    allocations = [
        (e.payload.agent_id, e.payload.model)  # type: ignore[union-attr]
        for e in events
        if e.kind == runstream.EventKind.MODEL_ALLOCATION
    ]
    assert allocations == [("Triage", "offline-triage"), ("Writer", "offline-writer")]
    texts = [e.payload for e in events if e.kind == runstream.EventKind.TEXT_DELTA]
    assert [(t.agent_id, t.delta, t.final) for t in texts] == [  # type: ignore[union-attr]
        ("Writer", "Order A-17 shipped on Monday.", True)
    ]
    assert run.metrics == {
        "input_tokens": 360.0,
        "output_tokens": 90.0,
        "total_tokens": 450.0,
        "model_calls": 3.0,
    }


async def test_agui_example_prints_the_live_runs_ag_ui_events(
    server: RunstreamServer, tmp_path: Path
) -> None:
    """The AG-UI example, pointed at a bridge, follows a live run to its end."""
    import runstream

    from tests.clients.integrations.extras import require_extra

    require_extra("ag_ui", "agui")
    from runstream.integrations.agui_bridge import AguiBridge

    source = readme_examples()["agui"]
    assert "127.0.0.1:8090" in source
    async with runstream.connect(server.target) as client:
        bridge = AguiBridge(client, port=0)
        await bridge.start()
        try:
            script = tmp_path / "agui_example.py"
            script.write_text(source.replace("127.0.0.1:8090", f"127.0.0.1:{bridge.port}"))
            run = await client.start_run("agui-example")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), run.run_id,
                cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                async with run:
                    async with run.step("draft"):
                        await run.text("writer", "m1", "Hello ", step_id="draft")
                        await run.text("writer", "m1", "AG-UI", final=True, step_id="draft")
                    await run.complete()
                stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        finally:
            await bridge.stop()
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines[:2] == ["RUN_STARTED ", "STATE_SNAPSHOT "]
    assert "TEXT_MESSAGE_CONTENT Hello " in lines
    assert "TEXT_MESSAGE_CONTENT AG-UI" in lines
    assert lines[-1] == "RUN_FINISHED "
