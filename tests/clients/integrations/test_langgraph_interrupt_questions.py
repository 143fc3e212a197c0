"""What an ``interrupt()`` asks a person, where no test looked (found by the mutation audit
mu68g): a mapping's ``message`` is the question's prompt, and a context that is no mapping is
kept under its name."""

from __future__ import annotations

from runstream_server.app import RunstreamServer

from .test_langgraph import _answered


async def test_an_interrupts_message_is_the_questions_prompt(server: RunstreamServer) -> None:
    result, _, decisions = await _answered(server, {"message": "Ship the draft?"}, "approve")
    assert result == {"picked": "approve"}
    assert [(d.prompt, [o.value for o in d.options]) for d in decisions] == [
        ("Ship the draft?", ["approve", "reject"])
    ]


async def test_an_interrupts_context_that_is_no_mapping_is_kept_under_its_name(
    server: RunstreamServer,
) -> None:
    question = {"question": "Publish?", "context": "draft 3 of 5"}
    _, _, decisions = await _answered(server, question, "approve")
    assert decisions[0].context["context"] == "draft 3 of 5"


async def test_a_questions_context_names_its_interrupt_and_step(server: RunstreamServer) -> None:
    """What a person answering (and a producer restarted with its checkpoints) reads of
    where the question comes from."""
    _, _, decisions = await _answered(server, {"question": "Publish?"}, "approve")
    context = decisions[0].context
    assert context["step_id"] == "ask" and len(context["interrupt_id"]) >= 16, context
