"""The scenario `runstream demo` plays: a 17-step campaign workflow, as data.

The workflow follows the reference system's campaign generator: a project manager hands a
brief through strategy, personas, creative, copy, visuals, channels, review, summaries, a
landing page and delivery. Each step reports what a real multi-agent run reports: agent
activity, the manager's reasoning, model allocation, streamed copy, sub-step progress,
metrics, artifacts, milestones (the server adds progress ones), one alert and one recovered
error. After the personas it asks its user a real question (which persona to prioritise),
with a default that it takes when nobody answers within a few seconds, and carries the
answer into the later steps. It declares a target (12 assets created) that the server
celebrates with a milestone when the reported count reaches it.

This module holds the steps, their agents, models and words; demo_campaign.Campaign plays
them through the SDK and demo.py runs the command around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstream import DecisionOption, StepSpec, Target, TargetKind

WORKFLOW = "campaign-generator"
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
