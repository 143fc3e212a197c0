"""The producer of `runstream demo`: plays the scenario of demo_script.py as a run.

It goes through the public SDK, exactly as an application would: the manager's reasoning
before each step, then the step's agent activity, model allocation, sub-step progress,
artifacts and metrics, with the scenario's streamed copy, recovered error, alert and
question on the steps that have them, and run-level metrics and milestones between steps.

Timings come from a seeded random generator, so two demos at the same speed look alike; the
default pacing takes about 30 seconds (plus up to 8 waiting for an answer) and ``--speed``
divides every pause.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import runstream
from runstream import ActivityType, DecisionOption, DecisionOutcome, MilestoneType, Severity

from .demo_script import (
    CLIENT_NOTE,
    HERO_COPY,
    PERSONA_DECISION_ID,
    PERSONA_DEFAULT,
    PERSONA_OPTIONS,
    PERSONA_QUESTION,
    PERSONA_TIMEOUT,
    PHASES,
    STAGES,
    Agent,
    Stage,
)


def _tokens(text: str) -> list[str]:
    """Splits text into token-like pieces: words with their leading space, long words halved."""
    pieces: list[str] = []
    for word in re.findall(r"\s*\S+", text):
        if len(word) > 7:
            middle = len(word) // 2
            pieces.extend((word[:middle], word[middle:]))
        else:
            pieces.append(word)
    return pieces


@dataclass
class Campaign:
    """Plays the campaign workflow as a producer through the SDK."""

    run: runstream.RunReporter
    speed: float = 1.0
    seed: int = 7
    rng: random.Random = field(init=False)
    tokens_total: int = 0
    cost_usd: float = 0.0
    assets: int = 0
    impressions: float = 0.0
    clicks: float = 0.0
    persona: DecisionOption | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.rng.uniform(0.85, 1.15) / self.speed)

    async def play(self) -> None:
        """Runs every stage, then completes the run."""
        run = self.run
        await run.workflow_state(
            "workflow_started",
            current_stage=PHASES[0],
            stages=PHASES,
            completion_percentage=0.0,
            active_agents=(STAGES[0].agent.agent_id,),
            pipeline_status={"brief_loaded": True, "assets_ready": False},
        )
        hooks: dict[str, Callable[[runstream.StepReporter, Stage], Coroutine[Any, Any, None]]] = {
            "copy": self._stream_copy,
            "designer": self._rate_limited_render,
            "media_planner": self._cpc_alert,
            "client_summary": self._stream_client_note,
        }
        phase = PHASES[0]
        for index, stage in enumerate(STAGES, start=1):
            if stage.phase != phase:
                phase = stage.phase
                await run.workflow_state(
                    "phase_transition",
                    current_stage=phase,
                    stages=PHASES,
                    completion_percentage=round((index - 1) / len(STAGES) * 100, 1),
                    active_agents=(stage.agent.agent_id,),
                    pipeline_status={"brief_loaded": True, "assets_ready": index > 8},
                )
            await self.play_stage(stage, hooks.get(stage.step_id))
            await self.after_stage(index, stage)
            if stage.step_id == "audience_persona":
                await self.ask_persona()
        await run.milestone(
            "Campaign delivered",
            type=MilestoneType.COMPLETION,
            description=f"{len(STAGES)} steps, {self.assets} assets, landing page live",
            data={"assets": self.assets, "tokens": self.tokens_total},
        )
        await run.complete(
            summary=f"Campaign delivered: {self.assets} assets, landing page, media plan",
            result={
                "assets": self.assets,
                "tokens": self.tokens_total,
                "cost_usd": round(self.cost_usd, 2),
                "forecast_impressions": round(self.impressions),
                "forecast_clicks": round(self.clicks),
                "persona": self.persona.value if self.persona else PERSONA_DEFAULT,
            },
        )

    async def ask_persona(self) -> None:
        """Asks the user which persona leads the campaign; the default when nobody answers."""
        run = self.run
        await run.thinking(
            "Two personas carry 80% of the forecast and the creative can only lead with one: "
            "asking the team",
            thinking_type="decision_point",
            stage="Planning",
            factors=("forecast_share", "brand_fit"),
            confidence=0.55,
        )
        timeout = PERSONA_TIMEOUT / self.speed
        result = await run.ask(
            PERSONA_QUESTION,
            PERSONA_OPTIONS,
            default=PERSONA_DEFAULT,
            timeout=timeout,
            can_skip=True,
            context={"forecast_share": {"weekend_wanderer": 0.48, "city_summiteer": 0.32}},
            decision_type="persona_priority",
            affects_workflow=True,
            decision_id=PERSONA_DECISION_ID,
        )
        chosen = result.choice or PERSONA_DEFAULT
        self.persona = next(o for o in PERSONA_OPTIONS if o.value == chosen)
        how = {
            DecisionOutcome.ANSWERED: f"chosen by {result.answered_by or 'a viewer'}",
            DecisionOutcome.DEFAULTED: f"nobody answered within {timeout:.1f}s: the default",
            DecisionOutcome.SKIPPED: "question skipped: keeping the default",
        }.get(result.outcome, "keeping the default")
        await run.thinking(
            f"Prioritising the {self.persona.label} persona ({how}); creative, copy and media "
            "lead with it",
            thinking_type="route_planning",
            stage="Planning",
            factors=("user_decision",),
            confidence=0.9,
        )

    async def play_stage(
        self,
        stage: Stage,
        hook: Callable[[runstream.StepReporter, Stage], Coroutine[Any, Any, None]] | None,
    ) -> None:
        run, agent, brain = self.run, stage.agent, stage.brain
        thinking = stage.thinking
        if self.persona is not None and stage.phase in ("Creative", "Channels"):
            thinking += f" (leading with the {self.persona.label})"
        await run.thinking(
            thinking,
            thinking_type="route_planning",
            stage=stage.phase,
            factors=("objectives", "audience", "budget"),
            confidence=round(self.rng.uniform(0.82, 0.97), 2),
            reasoning_depth="deep" if brain.tier == "high" else "standard",
        )
        await self.pause(0.15)
        async with run.step(stage.step_id) as step:
            await run.activity(
                agent.agent_id,
                ActivityType.STARTED,
                f"Picked up: {stage.description.lower()}",
                agent_name=agent.name,
                agent_type=agent.type,
                step_id=stage.step_id,
            )
            expected_tokens = int(self.rng.uniform(2_500, 9_000))
            await run.model_allocation(
                agent.agent_id,
                brain.model,
                tier=brain.tier,
                reasoning=stage.reasoning,
                complexity=brain.complexity,
                context_window=brain.context_window,
                expected_cost_usd=round(expected_tokens / 1000 * brain.cost_per_1k_tokens, 4),
                factors=("task_complexity", "latency", "cost"),
                performance_expectation=brain.performance,
            )
            tokens = 0
            count = len(stage.sub_steps)
            for position, (sub_step, detail) in enumerate(stage.sub_steps):
                tokens += expected_tokens // count
                await step.progress(
                    round(position / count * 100 + self.rng.uniform(2, 8), 1),
                    sub_step,
                    detail=detail,
                    tokens_processed=tokens,
                )
                if position == count // 2:
                    await run.activity(
                        agent.agent_id,
                        ActivityType.PROGRESS,
                        detail,
                        agent_name=agent.name,
                        agent_type=agent.type,
                        step_id=stage.step_id,
                    )
                if position == 0 and hook is not None:
                    await hook(step, stage)
                await self.pause(stage.seconds / count)
            for name, kind, size in stage.artifacts:
                await step.artifact(name, kind=kind, size_bytes=size)
                self.assets += 1
            await step.progress(100, "done", detail=stage.summary, tokens_processed=tokens)
            metrics = {**stage.step_metrics, "tokens": float(tokens)}
            await step.metrics(metrics)
            step.set_summary(stage.summary)
            self.tokens_total += tokens
            self.cost_usd += tokens / 1000 * brain.cost_per_1k_tokens
            await run.activity(
                agent.agent_id,
                ActivityType.COMPLETED,
                stage.summary,
                agent_name=agent.name,
                agent_type=agent.type,
                step_id=stage.step_id,
            )

    async def after_stage(self, index: int, stage: Stage) -> None:
        """Run-level metrics and milestones between steps."""
        run = self.run
        if index >= 2:
            # The forecast firms up as each step refines the plan.
            target = 1_200_000 * min(1.0, 0.35 + index / len(STAGES) * 0.65)
            self.impressions = round(target * self.rng.uniform(0.97, 1.03))
            ctr = 0.021 + index * 0.0004 + self.rng.uniform(-0.0008, 0.0008)
            self.clicks = round(self.impressions * ctr)
        values = {
            "tokens": float(self.tokens_total),
            "cost_usd": round(self.cost_usd, 4),
            "assets": float(self.assets),
            # The declared target watches this one; the server fires its milestone.
            "assets_created": float(self.assets),
        }
        if self.impressions:
            values |= {
                "impressions": self.impressions,
                "clicks": self.clicks,
                "ctr": round(self.clicks / self.impressions, 4),
            }
        await run.metrics(values)
        if stage.step_id == "strategy":
            await run.milestone(
                "Strategy approved",
                type=MilestoneType.QUALITY,
                description="Positioning and KPIs signed off by the Project Manager",
            )
        if stage.step_id == "review":
            await run.milestone(
                "Quality bar met",
                type=MilestoneType.QUALITY,
                description="Review score 94/100, above the 85 threshold",
                data={"score": 94},
            )

    async def _stream(self, agent: Agent, message_id: str, step_id: str, text: str) -> None:
        pieces = _tokens(text)
        for position, piece in enumerate(pieces):
            await self.run.text(
                agent.agent_id,
                message_id,
                piece,
                final=position == len(pieces) - 1,
                step_id=step_id,
            )
            await asyncio.sleep(self.rng.uniform(0.02, 0.05) / self.speed)

    async def _stream_copy(self, step: runstream.StepReporter, stage: Stage) -> None:
        await self._stream(stage.agent, "hero-copy", stage.step_id, HERO_COPY)

    async def _stream_client_note(self, step: runstream.StepReporter, stage: Stage) -> None:
        await self._stream(stage.agent, "client-note", stage.step_id, CLIENT_NOTE)

    async def _rate_limited_render(self, step: runstream.StepReporter, stage: Stage) -> None:
        await self.pause(0.3)
        await self.run.error_recovery(
            "Image API rate limit exceeded (HTTP 429) while rendering the hero banner",
            severity=Severity.MEDIUM,
            recovery_strategy="retry_with_backoff",
            can_continue=True,
            affected_agents=(stage.agent.agent_id,),
            attempt=1,
            step_id=stage.step_id,
        )
        await self.pause(1.0)
        await self.run.activity(
            stage.agent.agent_id,
            ActivityType.PROGRESS,
            "Retry succeeded after backoff; hero banner rendered",
            agent_name=stage.agent.name,
            agent_type=stage.agent.type,
            step_id=stage.step_id,
        )

    async def _cpc_alert(self, step: runstream.StepReporter, stage: Stage) -> None:
        await self.pause(0.3)
        await self.run.alert(
            "Projected display CPC is $1.38, 38% above the $1.00 target",
            severity=Severity.MEDIUM,
            suggested_action="Shift 10% of the display budget to social",
            code="CPC_THRESHOLD",
            data={"channel": "display", "projected_cpc": 1.38, "target_cpc": 1.0},
            step_id=stage.step_id,
        )
