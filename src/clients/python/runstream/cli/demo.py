"""`runstream demo`: a simulated 17-step campaign workflow, produced and watched live.

The workflow follows the reference system's campaign generator: a project manager hands a
brief through strategy, personas, creative, copy, visuals, channels, review, summaries, a
landing page and delivery. Each step reports what a real multi-agent run reports: agent
activity, the manager's reasoning, model allocation, streamed copy, sub-step progress,
metrics, artifacts, milestones (the server adds progress ones), one alert and one recovered
error. After the personas it asks its user a real question (which persona to prioritise),
with a default that it takes when nobody answers within a few seconds, and carries the
answer into the later steps. It declares a target (12 assets created) that the server
celebrates with a milestone when the reported count reaches it. The producer and the
watcher both go through the public SDK, exactly as an application would.

Timings come from a seeded random generator, so two demos at the same speed look alike; the
default pacing takes about 30 seconds (plus up to 8 waiting for an answer) and ``--speed``
divides every pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import runstream
from runstream import (
    ActivityType,
    DecisionOption,
    DecisionOutcome,
    MilestoneType,
    Severity,
    StepSpec,
    Target,
    TargetKind,
)

from .errors import CliError
from .fmt import format_duration, literal, run_status_text, span
from .render import follow_run
from .replicas import replicas
from .stopping import cancelled_by_signals

WORKFLOW = "campaign-generator"
DEFAULT_ADDRESS = "127.0.0.1:50051"
DISPLAY_NAME = "Acme Trail 2 · spring launch campaign"
PHASES = ("Planning", "Creative", "Channels", "Review", "Build & ship")

PERSONA_QUESTION = "Which audience persona should we prioritise?"
PERSONA_DECISION_ID = "persona-priority"
PERSONA_OPTIONS = (
    DecisionOption(
        "weekend_wanderer",
        "Weekend Wanderer",
        "Trail runners who go long on weekends; 48% of the forecast",
    ),
    DecisionOption("city_summiteer", "City Summiteer", "Urban hikers bagging peaks near town; 32%"),
    DecisionOption("trail_veteran", "Trail Veteran", "Seasoned ultra runners; small but loyal"),
)
PERSONA_DEFAULT = "weekend_wanderer"
PERSONA_TIMEOUT = 8.0
"""Seconds the demo waits for an answer at speed 1 (divided by --speed)."""

ASSETS_TARGET = Target("assets_created", 12, TargetKind.COUNT, "Create 12 campaign assets")


@dataclass(frozen=True)
class Agent:
    """An agent of the simulated crew."""

    agent_id: str
    name: str
    type: str


@dataclass(frozen=True)
class Brain:
    """The model the manager allocates to a step's agent."""

    model: str
    tier: str
    complexity: str
    context_window: int
    cost_per_1k_tokens: float
    performance: str


O3 = Brain("o3", "high", "high", 200_000, 0.010, "exceptional_reasoning")
GPT_4O = Brain("gpt-4o", "medium", "medium", 128_000, 0.005, "strong_generation")
GPT_4O_MINI = Brain("gpt-4o-mini", "low", "low", 128_000, 0.0006, "fast_and_cheap")


@dataclass(frozen=True)
class Stage:
    """One step of the campaign workflow and how the simulation plays it."""

    step_id: str
    name: str
    description: str
    agent: Agent
    phase: str
    brain: Brain
    reasoning: str
    thinking: str
    sub_steps: tuple[tuple[str, str], ...]
    artifacts: tuple[tuple[str, str, int], ...]
    seconds: float
    summary: str
    step_metrics: dict[str, float] = field(default_factory=dict)


def _agent(agent_type: str, name: str) -> Agent:
    # The server counts a step's planned agent as active under that name, so the agent's
    # own reports use the same id; otherwise it would show up twice among active agents.
    return Agent(agent_id=name, name=name, type=agent_type)


STAGES: tuple[Stage, ...] = (
    Stage(
        "project_manager",
        "Project Manager",
        "Initialize project and objectives",
        _agent("project_manager", "Project Manager"),
        "Planning",
        O3,
        "Scoping sets every later step; worth the strongest reasoning model",
        "Brief names a product launch with a 6-week window: plan a full-funnel campaign",
        (
            ("parsing brief", "Reading the client brief and brand guide"),
            ("objectives", "Setting KPIs: 2.5% CTR, 40k sessions, CPA under $18"),
            ("planning", "Sequencing 17 steps across 5 phases"),
        ),
        (("project-brief.md", "document", 6_144),),
        1.2,
        "Objectives and KPIs set",
        {"objectives": 4},
    ),
    Stage(
        "strategy",
        "Strategy Team",
        "Develop campaign strategy and positioning",
        _agent("strategy_team", "Strategy Team"),
        "Planning",
        O3,
        "Positioning trade-offs need deep multi-factor reasoning",
        "Competitors own 'cushioning'; position on 'lightness for long days' instead",
        (
            ("market scan", "Comparing 6 competitor campaigns"),
            ("positioning", "Drafting positioning: 'Run further, feel lighter'"),
            ("channel mix", "Weighing social, search and display"),
            ("sign-off", "Checking strategy against KPIs"),
        ),
        (("strategy.md", "document", 11_264),),
        2.2,
        "Positioning: lightness for long days",
        {"channels": 3},
    ),
    Stage(
        "audience_persona",
        "Audience Persona",
        "Create audience personas",
        _agent("persona_agent", "Persona Agent"),
        "Planning",
        GPT_4O,
        "Persona writing is generative, moderate reasoning",
        "Two segments carry 80% of the forecast: weekend trail runners and urban hikers",
        (
            ("segmenting", "Clustering 12k survey answers"),
            ("personas", "Writing 'Weekend Wanderer' and 'City Summiteer'"),
            ("validation", "Checking personas against purchase data"),
        ),
        (("personas.json", "persona", 4_820),),
        1.6,
        "3 personas",
        {"personas": 3},
    ),
    Stage(
        "creative",
        "Creative Team",
        "Generate creative concepts",
        _agent("creative_team", "Creative Team"),
        "Creative",
        GPT_4O,
        "Concept generation rewards fluency over depth",
        "Lead with the 'long day' story; keep product shots outdoors at golden hour",
        (
            ("ideation", "Generating 24 concept directions"),
            ("shortlist", "Scoring concepts against the positioning"),
            ("concepts", "Developing 3 concepts into boards"),
        ),
        (("concepts.md", "document", 9_216),),
        2.0,
        "3 concepts, 'The Long Day' leads",
        {"concepts": 3},
    ),
    Stage(
        "copy",
        "Copy Team",
        "Write compelling copy",
        _agent("copywriter", "Copywriter"),
        "Creative",
        GPT_4O,
        "Brand voice and rhythm matter; mid-tier model writes well",
        "Copy must carry the positioning in under 12 words for the headline",
        (
            ("headlines", "Writing 12 headline variants"),
            ("hero copy", "Writing the hero block"),
            ("tone check", "Checking copy against the brand voice"),
        ),
        (("copy.md", "copy", 3_072),),
        1.0,
        "12 headlines, hero copy",
        {"headlines": 12},
    ),
    Stage(
        "cta_optimizer",
        "CTA Optimizer",
        "Optimize calls-to-action",
        _agent("cta_optimizer", "CTA Optimizer"),
        "Creative",
        GPT_4O_MINI,
        "Short, templated variants; the small model is enough",
        "Urgency outperforms curiosity for this audience by ~18% in past tests",
        (
            ("variants", "Generating 8 CTA variants"),
            ("scoring", "Predicting click-through per variant"),
        ),
        (("cta-variants.json", "copy", 1_536),),
        1.2,
        "Best CTA: 'Claim your pair'",
        {"variants": 8},
    ),
    Stage(
        "visual",
        "Visual Team",
        "Create visual concepts",
        _agent("visual_team", "Visual Team"),
        "Creative",
        GPT_4O,
        "Art direction needs multimodal judgement",
        "Moodboard: earthy palette, motion blur, one runner per frame",
        (
            ("moodboard", "Collecting 40 references"),
            ("palette", "Picking palette and type"),
            ("storyboard", "Sketching the 15s video"),
        ),
        (("moodboard.png", "image", 2_457_600),),
        1.8,
        "Moodboard and storyboard",
        {"frames": 6},
    ),
    Stage(
        "designer",
        "Designer Team",
        "Design visual assets",
        _agent("designer", "Designer"),
        "Creative",
        GPT_4O,
        "High volume of renders; balanced cost and quality",
        "Render hero banner first: every channel depends on it",
        (
            ("hero banner", "Rendering the hero banner in 4 sizes"),
            ("social cards", "Rendering 9 social cards"),
            ("export", "Exporting web-optimized assets"),
        ),
        (("hero-banner.png", "image", 1_843_200), ("social-cards.zip", "archive", 7_340_032)),
        2.2,
        "13 assets rendered",
        {"assets": 13},
    ),
    Stage(
        "social_media",
        "Social Media Campaign",
        "Develop social media strategy",
        _agent("social_strategist", "Social Strategist"),
        "Channels",
        GPT_4O,
        "Channel-specific writing with moderate planning",
        "Instagram and TikTok carry the launch; LinkedIn is out of scope",
        (
            ("calendar", "Planning a 6-week posting calendar"),
            ("captions", "Writing 18 captions"),
            ("hashtags", "Choosing hashtags per platform"),
        ),
        (("social-calendar.csv", "data", 4_096),),
        1.6,
        "18 posts over 6 weeks",
        {"posts": 18},
    ),
    Stage(
        "emotion_personalization",
        "Emotion Personalization",
        "Add emotional intelligence",
        _agent("emotion_agent", "Emotion Agent"),
        "Channels",
        O3,
        "Mapping emotions to segments is subtle; use the reasoning model",
        "Wanderers respond to freedom, Summiteers to achievement: split the messaging",
        (
            ("emotion map", "Mapping emotional drivers per persona"),
            ("variants", "Personalizing copy for 2 segments"),
        ),
        (("emotion-map.json", "data", 2_048),),
        1.4,
        "2 emotional variants",
        {"segments": 2},
    ),
    Stage(
        "media_planner",
        "Media Planner",
        "Plan media strategy",
        _agent("media_planner", "Media Planner"),
        "Channels",
        O3,
        "Budget allocation is an optimization problem; reasoning tier",
        "Shift spend toward social: cheapest reach for both personas",
        (
            ("budget", "Splitting the $120k budget across channels"),
            ("forecast", "Forecasting reach and clicks"),
            ("flighting", "Scheduling bursts around launch week"),
        ),
        (("media-plan.xlsx", "spreadsheet", 18_432),),
        1.8,
        "$120k across 3 channels",
        {"channels": 3},
    ),
    Stage(
        "review",
        "Review Team",
        "Quality review and validation",
        _agent("reviewer", "Reviewer"),
        "Review",
        O3,
        "Final quality gate: strongest model catches the subtle issues",
        "Check claims ('lightest in class') against the spec sheet before approval",
        (
            ("brand check", "Checking every asset against the brand guide"),
            ("claims", "Verifying product claims"),
            ("scoring", "Scoring the campaign"),
        ),
        (("review-report.md", "document", 5_120),),
        2.0,
        "Quality score 94/100",
        {"score": 94},
    ),
    Stage(
        "campaign_summary",
        "Campaign Summary",
        "Create campaign summary",
        _agent("summarizer", "Summarizer"),
        "Review",
        GPT_4O_MINI,
        "Summarizing known material; the small model suffices",
        "Summary for the internal team: decisions, assets, forecast",
        (
            ("collecting", "Collecting decisions and assets"),
            ("writing", "Writing the internal summary"),
        ),
        (("campaign-summary.pdf", "document", 204_800),),
        1.0,
        "Internal summary",
        {},
    ),
    Stage(
        "client_summary",
        "Client Summary",
        "Generate client-facing summary",
        _agent("account_manager", "Account Manager"),
        "Review",
        GPT_4O,
        "Client-facing tone needs polish",
        "Lead with the forecast and the creative; keep the budget table short",
        (
            ("outline", "Outlining the client deck"),
            ("writing", "Writing the client summary"),
        ),
        (("client-summary.pdf", "document", 312_320),),
        0.8,
        "Client summary ready",
        {},
    ),
    Stage(
        "web_developer",
        "Web Developer",
        "Build campaign website",
        _agent("web_developer", "Web Developer"),
        "Build & ship",
        GPT_4O,
        "Code generation with a long context of assets",
        "Single landing page, hero video, pre-order form; no framework needed",
        (
            ("scaffold", "Scaffolding the landing page"),
            ("sections", "Building hero, features and pre-order sections"),
            ("responsive", "Tuning for mobile"),
        ),
        (("landing-page.html", "html", 48_128),),
        2.2,
        "Landing page built",
        {"sections": 5},
    ),
    Stage(
        "html_validation",
        "HTML Validation",
        "Validate website code",
        _agent("validator", "Validator"),
        "Build & ship",
        GPT_4O_MINI,
        "Rule-based checks; cheapest model",
        "Validate markup, accessibility and page weight before shipping",
        (
            ("markup", "Validating HTML5 markup"),
            ("accessibility", "Checking contrast and alt text"),
        ),
        (("validation-report.json", "data", 1_024),),
        1.0,
        "0 errors, 2 warnings fixed",
        {"errors": 0},
    ),
    Stage(
        "delivery",
        "Delivery",
        "Package and deliver the campaign",
        _agent("delivery_agent", "Delivery Agent"),
        "Build & ship",
        GPT_4O_MINI,
        "Packaging only; the small model is enough",
        "Bundle every asset with the summaries and hand over",
        (
            ("packaging", "Bundling 19 assets"),
            ("handover", "Publishing the bundle to the client"),
        ),
        (("campaign-bundle.zip", "archive", 12_582_912),),
        0.8,
        "Bundle delivered",
        {},
    ),
)

HERO_COPY = (
    "Headline: Run further. Feel lighter.\n"
    "The Acme Trail 2 weighs less than your water bottle and grips like it means it, "
    "so the long way home becomes the best part of the day.\n"
    "CTA: Claim your pair, first 500 ship free."
)

CLIENT_NOTE = (
    "Forecast: 1.2M impressions and 31k clicks over six weeks, led by Instagram and TikTok. "
    "Every asset passed review with a score of 94/100."
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


def campaign_steps() -> list[StepSpec]:
    """The 17 planned steps of the campaign workflow, each in its phase."""
    return [
        StepSpec(
            stage.step_id,
            stage.name,
            description=stage.description,
            agent=stage.agent.name,
            phase=stage.phase,
        )
        for stage in STAGES
    ]


RECORDED_RUNS = 3
"""Runs of the campaign with recorded timings that a fresh demo store starts with, so the
server has history to estimate from and the very first demo shows an ETA."""


async def seed_recorded_runs(server: Any, speed: float, seed: int) -> int:
    """Stores RECORDED_RUNS finished campaign runs with the stages' usual timings (±10 %, at
    this speed) on the embedded server, unless its store already has history; returns how
    many runs of the workflow it now has to learn from."""
    from runstream.v1 import event_pb2, run_pb2

    manager = server.runs
    page = await manager.list_runs(
        filter_text=f'workflow = "{WORKFLOW}" AND status = SUCCEEDED', page_size=50, page_token=""
    )
    known = len(page[0])
    if known:
        return known
    rng = random.Random(seed + 1)
    moment = datetime.now(UTC) - timedelta(days=1)
    specs = [
        run_pb2.StepSpec(step_id=stage.step_id, name=stage.name, phase=stage.phase)
        for stage in STAGES
    ]
    for number in range(1, RECORDED_RUNS + 1):
        run = await manager.create_run(
            run_id="",
            workflow=WORKFLOW,
            display_name=f"{DISPLAY_NAME} (recorded run {number})",
            labels={"source": "recorded"},
            steps=specs,
        )
        events: list[event_pb2.RunEvent] = []

        def at(event: event_pb2.RunEvent, when: datetime) -> event_pb2.RunEvent:
            event.event_time.FromDatetime(when)
            return event

        for stage in STAGES:
            start = event_pb2.StepStarted(step_id=stage.step_id)
            events.append(at(event_pb2.RunEvent(step_started=start), moment))
            moment += timedelta(seconds=stage.seconds * rng.uniform(0.9, 1.1) / speed)
            done = event_pb2.StepCompleted(step_id=stage.step_id)
            events.append(at(event_pb2.RunEvent(step_completed=done), moment))
        events.append(at(event_pb2.RunEvent(run_completed=event_pb2.RunCompleted()), moment))
        await manager.append(run.run_id, events)
        moment += timedelta(minutes=5)
    return RECORDED_RUNS


def _as_typed(path: Path) -> str:
    """A path as a user can type it from here: relative when below the working directory."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return str(path)
    return relative if "/" in relative else f"./{relative}"


def cli_command() -> str:
    """How to run `runstream` from where the user is: its name when it is on PATH, else its
    path in the virtualenv (``.venv/bin/runstream`` after ``make demo``)."""
    if shutil.which("runstream"):
        return "runstream"
    for program in (Path(sys.argv[0]), Path(sys.executable).parent / "runstream"):
        if program.name == "runstream" and program.exists():
            return _as_typed(program)
    return f"{Path(sys.executable).name} -m runstream.cli.main"


def grpcurl_command() -> str | None:
    """grpcurl when it is installed (on PATH, or in the virtualenv beside Python)."""
    if shutil.which("grpcurl"):
        return "grpcurl"
    beside = Path(sys.executable).parent / "grpcurl"
    return _as_typed(beside) if beside.exists() else None


# --- the command ---------------------------------------------------------------------------


PLAINTEXT = ("", "-plaintext")
"""What the suggested `runstream` and grpcurl commands add to reach a server without a token
or TLS (the embedded server and replicas, which take none)."""


@dataclass(frozen=True)
class DemoOptions:
    """What `runstream demo` was asked to do."""

    target: str | None
    address: str
    store: Path | None
    speed: float
    serve: bool
    live: bool
    seed: int = 7
    viewer: str = ""
    """Who answers the demo's question from the live view."""
    replicas: int = 0
    """With 2 or more: a redis-server and that many replicas on it; the demo reports to the
    first replica and watches through the second."""
    connect: Callable[[str], runstream.Client] = runstream.connect
    """A client for `target`, with the command's token and TLS options (the embedded server
    and replicas take none)."""
    security: tuple[str, str] = PLAINTEXT
    """Those options again, for the `runstream` and grpcurl commands the summary suggests
    for `target` (never the token itself)."""


@contextlib.asynccontextmanager
async def _embedded_server(options: DemoOptions, console: Console) -> AsyncIterator[str]:
    """An in-process Runstream server for the demo; yields its target."""
    from runstream_server.app import RunstreamServer, ServerConfig
    from runstream_server.auth.edge import bind_error

    with contextlib.ExitStack() as stack:
        if options.store is not None:
            store = options.store
        else:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="runstream-demo-"))
            store = Path(directory) / "runstream.db"
        address = options.address
        if address == DEFAULT_ADDRESS and bind_error(address) is not None:
            console.print(
                Text(
                    f"Port {address} is in use (is `make serve` running?); the demo's own "
                    "server takes a free port instead.",
                    style="yellow",
                ),
                soft_wrap=True,
            )
            address = "127.0.0.1:0"
        server = RunstreamServer(ServerConfig(address=address, store_path=store))
        try:
            await server.start()
        except OSError as exc:  # names the address and why (the port in use, most often)
            raise CliError(f"{exc}; pass --address 127.0.0.1:0 for a free port") from exc
        except ValueError as exc:  # an address beyond loopback: it would serve anyone
            raise CliError(
                f"the demo's server checks no identity, so it listens on loopback only, not "
                f"{address}; pass --address 127.0.0.1:PORT (`runstream serve` serves others)"
            ) from exc
        try:
            console.print(
                Text.assemble(
                    ("Runstream server ", "bold"),
                    ("listening on ", ""),
                    (server.target, "bold cyan"),
                    (f"  (store: {store})", "grey62"),
                ),
                soft_wrap=True,
            )
            history = await seed_recorded_runs(server, options.speed, options.seed)
            console.print(
                Text(
                    f"ETA history: {history} earlier runs of {WORKFLOW} in this store"
                    if options.store is not None
                    else f"ETA history: {RECORDED_RUNS} recorded runs of {WORKFLOW} with its "
                    "usual step timings, stored in this demo's temporary store before it starts",
                    style="grey62",
                ),
                soft_wrap=True,
            )
            yield server.target
        finally:
            await server.stop(grace=1.0)


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Runs the demo; returns the process exit code (0 when the run succeeded)."""
    # SIGTERM and SIGHUP (its terminal closed) stop the demo the way Ctrl-C does: by
    # cancelling it, so the embedded server shuts down cleanly and the run is cancelled.
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(cancelled_by_signals())
        watch_target = None
        if options.replicas:
            targets = await stack.enter_async_context(replicas(options.replicas, console))
            target, watch_target = targets[0], targets[1 % len(targets)]
        elif options.target is None:
            target = await stack.enter_async_context(_embedded_server(options, console))
        else:
            target = options.target
            console.print(
                Text.assemble(("Using Runstream server at ", "bold"), (target, "bold cyan")),
                soft_wrap=True,
            )
        connect = runstream.connect if options.target is None else options.connect
        client = await stack.enter_async_context(connect(target))
        viewer_client = client
        if watch_target is not None and watch_target != target:
            viewer_client = await stack.enter_async_context(runstream.connect(watch_target))
            console.print(
                Text.assemble(
                    ("Reporting to ", "bold"),
                    (target, "bold cyan"),
                    (", watching through ", "bold"),
                    (watch_target, "bold cyan"),
                ),
                soft_wrap=True,
            )
        run = await client.start_run(
            WORKFLOW,
            steps=campaign_steps(),
            display_name=DISPLAY_NAME,
            labels={"team": "growth", "source": "demo"},
            targets=[ASSETS_TARGET],
        )
        console.print(
            Text.assemble(
                ("Started run ", "bold"),
                (run.run_id, "bold bright_white"),
                f" · {WORKFLOW} · {len(STAGES)} steps · speed {options.speed:g}x",
            ),
            soft_wrap=True,
        )
        campaign = Campaign(run, speed=options.speed, seed=options.seed)
        producer = asyncio.create_task(_produce(run, campaign))
        try:
            final = await _watch_while_producing(
                viewer_client, run.run_id, producer, options, console
            )
        finally:
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, runstream.RunstreamError):
                await producer
        print_summary(
            console,
            final,
            target,
            embedded=options.target is None,
            serve=options.serve,
            security=options.security if options.target is not None else PLAINTEXT,
        )
        if options.serve and options.target is None:
            await _serve_until_signalled(console, target)
    return 0 if final.status is runstream.RunStatus.SUCCEEDED else 1


async def _produce(run: runstream.RunReporter, campaign: Campaign) -> None:
    # `async with run` reports how the run ended whatever happens: failed if the workflow
    # raises, cancelled if this task is cancelled (Ctrl-C, SIGTERM), so the watcher always
    # sees a terminal event.
    async with run:
        await campaign.play()


async def _watch_while_producing(
    client: runstream.Client,
    run_id: str,
    producer: asyncio.Task[None],
    options: DemoOptions,
    console: Console,
) -> runstream.Run:
    watcher = asyncio.create_task(
        follow_run(
            client,
            run_id,
            console=console,
            live=options.live,
            title="Runstream demo",
            interactive=options.live,
            viewer=options.viewer,
        )
    )
    try:
        done, _ = await asyncio.wait({watcher, producer}, return_when=asyncio.FIRST_COMPLETED)
        failure = producer.exception() if producer in done else None
        if watcher not in done and failure is not None:
            # The producer died; `async with run` reported RunFailed, which ends the watch.
            # If even that report could not be made, do not wait forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher), timeout=10)
            if not watcher.done():
                raise failure
        return await watcher
    finally:
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def print_summary(
    console: Console,
    run: runstream.Run,
    target: str,
    *,
    embedded: bool,
    serve: bool,
    security: tuple[str, str] = PLAINTEXT,
) -> None:
    """The closing summary: outcome, numbers, and how to look at the run again (`security`:
    the options that reach `target` as the demo did, for `runstream` and for grpcurl)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="grey62", no_wrap=True)
    grid.add_column()
    grid.add_row("Run ID", Text(run.run_id, style="bold bright_white"))
    grid.add_row("Status", run_status_text(run.status))
    grid.add_row("Duration", format_duration(span(run.start_time, run.end_time)))
    grid.add_row(
        "Steps", f"{run.progress.completed_steps}/{run.progress.total_steps} steps completed"
    )
    grid.add_row("Events", f"{run.last_seq} events")
    if run.artifacts_summary.total:
        grid.add_row("Artifacts", str(run.artifacts_summary.total))
    if run.result_summary:
        grid.add_row("Result", literal(run.result_summary))
    persona = run.result.get("persona")
    if isinstance(persona, str):
        label = next((o.label for o in PERSONA_OPTIONS if o.value == persona), persona)
        grid.add_row("Persona", literal(label))
    if run.error is not None:
        grid.add_row("Error", Text(run.error.message, style="bold red"))
    request = '{"run_id":"' + run.run_id + '"}'
    program = cli_command()
    grpcurl = grpcurl_command()
    lines: list[str] = []
    heading = "Inspect the run:"
    if embedded and not serve:
        # The server (and its temporary store) stop with the demo: point at one that stays.
        heading = "The demo's server stopped with it. To explore a run, keep one up:"
        # On a busy 127.0.0.1:50051 (another server there) `demo --serve` takes a free port
        # too: the commands after it go to the address it prints, not to that other server.
        address = DEFAULT_ADDRESS if target == DEFAULT_ADDRESS else "ADDRESS"
        then = "meanwhile" if address == DEFAULT_ADDRESS else "at the address it prints"
        lines = [
            f"{program} demo --serve",
            f"{program} runs --target {address}     # in another terminal, {then}",
            f"{program} get RUN_ID --target {address}",
            f"{program} dashboard --demo                # the same in the browser",
        ]
    else:
        for_cli, for_grpcurl = (f" {given}" if given else "" for given in security)
        if grpcurl is not None:
            lines += [
                f"{grpcurl}{for_grpcurl} {target} list",
                f"{grpcurl}{for_grpcurl} -d '{request}' {target} runstream.v1.RunService/GetRun",
                f"{grpcurl}{for_grpcurl} -d '{request}' {target} runstream.v1.RunService/WatchRun",
            ]
        lines += [
            f"{program} {command} {run.run_id} --target {target}{for_cli}"
            for command in ("get", "watch", "steps", "decisions")
        ]
    commands = Text()
    for line in lines:
        commands.append("  $ ", style="grey50")
        commands.append(line + "\n", style="bright_white")
    border = "green" if run.status is runstream.RunStatus.SUCCEEDED else "red"
    console.print(
        Panel(
            grid,
            title="[bold]Run summary[/]",
            title_align="left",
            border_style=border,
            expand=False,
        )
    )
    console.print(Text(heading, style="bold"))
    console.print(commands, soft_wrap=True, end="")


async def _serve_until_signalled(console: Console, target: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print(
        Text.assemble(
            ("Serving on ", "bold"),
            (target, "bold cyan"),
            (" until Ctrl-C or SIGTERM", ""),
        ),
        soft_wrap=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    console.print(Text("Shutting down", style="grey62"))
