"""The forms ``ask()`` takes an option in: a value, a (value, label[, description]) tuple or a
DecisionOption, each reaching the viewers as given; any other form is refused naming
``options`` before anything is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runstream import Client, DecisionOption, InvalidArgumentError

from tests.clients.test_decisions import open_decision


async def test_each_form_of_an_option_reaches_the_viewers_as_given(client: Client) -> None:
    run = await client.start_run("campaign")
    options: list[Any] = [
        "wanderer",
        ("summiteer", "City Summiteer"),
        ("veteran", "Trail Veteran", "Ten years on the trails"),
        DecisionOption("rookie", "First-timer", "New to trail running"),
    ]
    waiting = asyncio.create_task(run.ask("Which persona?", options, decision_id="persona"))
    shown = await open_decision(client, run.run_id, "persona")
    assert shown.options == (
        DecisionOption("wanderer"),
        DecisionOption("summiteer", "City Summiteer"),
        DecisionOption("veteran", "Trail Veteran", "Ten years on the trails"),
        DecisionOption("rookie", "First-timer", "New to trail running"),
    )
    await client.submit_decision(run.run_id, "persona", "veteran")
    assert (await asyncio.wait_for(waiting, 20)).choice == "veteran"
    await run.close()


@pytest.mark.parametrize(
    "option",
    [(), ("a", "A", "the first", "extra"), 42, None],
    ids=["empty tuple", "four-tuple", "number", "None"],
)
async def test_an_option_of_another_form_is_refused_naming_options(
    client: Client, option: Any
) -> None:
    run = await client.start_run("campaign")
    with pytest.raises(InvalidArgumentError) as refused:
        await run.ask("Which?", ["b", option])
    assert refused.value.message.startswith("options: "), refused.value.message
    assert "is not a DecisionOption" in refused.value.message
    await run.complete()  # nothing was sent: the reporter goes on
    await run.close()


async def test_a_decision_finds_its_option_by_value(client: Client) -> None:
    run = await client.start_run("campaign")
    options = [("summiteer", "City Summiteer"), ("veteran", "Trail Veteran")]
    waiting = asyncio.create_task(run.ask("Which persona?", options, decision_id="persona"))
    shown = await open_decision(client, run.run_id, "persona")
    assert shown.option("veteran") == DecisionOption("veteran", "Trail Veteran")
    assert shown.option("Trail Veteran") is None  # a label is no value
    await client.submit_decision(run.run_id, "persona", "veteran")
    await asyncio.wait_for(waiting, 20)
    await run.close()


async def test_a_timeout_of_true_is_refused_naming_timeout(client: Client) -> None:
    """A bool is an int to Python: ``timeout=True`` asked with a one-second deadline, the
    question closing before anybody could answer (found in review)."""
    run = await client.start_run("campaign")
    with pytest.raises(InvalidArgumentError) as refused:
        await asyncio.wait_for(run.ask("Which?", ["a", "b"], timeout=True), 20)
    assert refused.value.message.startswith("timeout: "), refused.value.message
    assert "True" in refused.value.message
    assert await client.list_decisions(run.run_id) == []  # nothing was asked
    await run.complete()
    await run.close()
