"""``start_run()`` checks its ``message`` before the run exists: a message the server would
refuse raises InvalidArgumentError and leaves no run behind."""

from __future__ import annotations

import pytest
from runstream import Client, InvalidArgumentError


async def test_a_message_too_long_creates_no_run(client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", message="x" * 4097)
    assert refused.value.message.startswith("message: ")
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []
