// The run page: header with the progress bar, decisions, metric tiles, steps, active agents,
// streamed agent output, thinking, model allocations and the activity feed.
import { DecisionOutcome, EventKind } from "../../gen/runstream/v1/event_pb";
import { type ActiveAgent, EstimateSource, RunHealth, RunStatus, type Step, StepStatus } from "../../gen/runstream/v1/run_pb";
import { serverNow } from "../clock";
import { $, attr, h, icon, reconcile, text } from "../dom";
import {
  ago,
  clock,
  compact,
  durationMillis,
  enumWords,
  formatDuration,
  hue,
  jsonText,
  initials,
  metricLabel,
  metricValue,
  millis,
  money,
  percentText,
} from "../format";
import { type DecisionItem, FEED_KINDS, FEED_LIMIT, type FeedItem, MODELS_SHOWN, type RunAction, type StreamedText, allowedActions, isTerminal, textStart } from "../model";
import type { RunSession } from "../session";

const PREFERRED_METRICS = ["impressions", "clicks", "ctr", "conversions", "tokens", "cost_usd", "assets"];
const MAX_TILES = 8;
/** A step list this long or shorter shows every step; a longer one folds long stretches. */
const STEPS_ALL_SHOWN = 50;
/** How many of a decision's context entries its card lists (by name; then "+3 more"). */
const CONTEXT_SHOWN = 6;
/** How many closed decisions stay on the page once none is open: those closed last. */
const RESOLVED_SHOWN = 2;
/** How many done (or pending) steps in a row fold into one line, in a long list ... */
const STRETCH_FOLDED = 8;
/** ... and how many of them stay beside the steps at work. */
const STRETCH_KEPT = 3;

export class RunView {
  readonly root: HTMLElement;
  private renderedFeedSeq = 0;
  private metricHistory = new Map<string, number[]>();
  private lastMetricSeq = -1;
  /** Whether a long step list shows every step (the steps card's "Show all"). */
  private allSteps = false;
  /** The decisions closed, in the order this page saw them close. */
  private closedOrder: string[] = [];
  private closedSeen = new Set<string>();
  /** The decision cards the last render showed. */
  private decisionsShown = new Set<string>();

  constructor(private readonly session: RunSession) {
    this.root = buildSkeleton(session.runId);
    $(this.root, ".feed").dataset.feedKinds = FEED_KINDS.map((k) => EventKind[k]).join(",");
    const decisions = $(this.root, ".decisions");
    decisions.addEventListener("click", (event) => void this.onDecisionClick(event));
    decisions.addEventListener("keydown", (event) => {
      // A held Enter clicks again and again: once focus moved on, it would answer the next
      // question with its first option.
      if (event.repeat && (event.key === "Enter" || event.key === " ")) event.preventDefault();
    });
    $(this.root, ".controls").addEventListener("click", (event) => this.onControlClick(event));
    $(this.root, ".feed-card").addEventListener("click", (event) => this.onFeedClick(event));
    $(this.root, ".steps-toggle").addEventListener("click", () => {
      this.allSteps = !this.allSteps;
      this.render();
    });
  }

  /** Pause and resume act at once; cancel asks first (the confirm row), then acts. */
  private onControlClick(event: Event): void {
    const button = (event.target as Element).closest<HTMLButtonElement>("button[data-action]");
    if (!button || button.disabled) return;
    const controls = $(this.root, ".controls");
    const action = button.dataset.action;
    if (action === "cancel") controls.dataset.confirm = "cancel";
    else if (action === "keep") delete controls.dataset.confirm;
    else if (action === "confirm-cancel") {
      delete controls.dataset.confirm;
      void this.session.control("cancel");
    } else if (action === "pause" || action === "resume") void this.session.control(action);
    this.render();
  }

  private onFeedClick(event: Event): void {
    const button = (event.target as Element).closest<HTMLButtonElement>("button");
    if (!button || button.disabled) return;
    if (button.classList.contains("load-older")) {
      void this.session.loadOlder();
      return;
    }
    const action = button.dataset.action as RunAction | undefined;
    if (action === "cancel") {
      // An alert suggesting a cancel opens the same confirmation as the header's button.
      $(this.root, ".controls").dataset.confirm = "cancel";
      $(this.root, ".run-head").scrollIntoView({ block: "start" });
      this.render();
    } else if (action) void this.session.control(action);
  }

  render(now = serverNow()): void {
    const { model } = this.session;
    const run = model.snapshot;
    attr(this.root, "data-last-seq", String(model.lastSeq));
    attr(this.root, "data-snapshot-seq", String(run?.lastSeq ?? 0));
    attr(this.root, "data-status", RunStatus[model.status] ?? "UNSPECIFIED");
    if (this.session.error) {
      const banner = $(this.root, ".run-error");
      banner.hidden = false;
      text(banner, `This run cannot be shown: ${this.session.error}`);
    }
    this.renderHeader(now);
    this.renderDecisions(now);
    this.renderMetrics();
    if (run) {
      this.renderSteps(run.steps, now);
      this.renderAgents(run.activeAgents, now);
    }
    this.renderOutput();
    this.renderThinking();
    this.renderModels();
    this.renderFeed(now);
    this.renderControls();
  }

  private renderControls(): void {
    const { model } = this.session;
    const allowed = allowedActions(model.status);
    const controls = $(this.root, ".controls");
    controls.hidden = allowed.size === 0;
    if (!allowed.has("cancel")) delete controls.dataset.confirm;
    const confirming = controls.dataset.confirm === "cancel";
    for (const button of Array.from(controls.querySelectorAll<HTMLButtonElement>("button[data-action]"))) {
      const action = button.dataset.action ?? "";
      const inConfirm = action === "confirm-cancel" || action === "keep";
      button.hidden = confirming ? !inConfirm : inConfirm || !allowed.has(action as RunAction);
      button.disabled = this.session.acting !== undefined;
    }
    text($(controls, ".confirm-text"), confirming ? "Cancel this run? It cannot be resumed." : "");
    text($(controls, ".control-error"), this.session.actionError);
    for (const button of Array.from(this.root.querySelectorAll<HTMLButtonElement>(".feed-action"))) {
      button.hidden = !allowed.has(button.dataset.action as RunAction);
      button.disabled = this.session.acting !== undefined;
    }
  }

  private renderHeader(now: number): void {
    const { model } = this.session;
    const run = model.snapshot;
    const status = model.status;
    text($(this.root, ".run-title"), run?.displayName || run?.workflow || this.session.runId);
    const pill = $(this.root, ".status-pill");
    attr(pill, "data-status", RunStatus[status] ?? "UNSPECIFIED");
    text(pill, statusLabel(status));
    const health = $(this.root, ".health-pill");
    const healthName = run ? RunHealth[run.health] : undefined;
    health.hidden = !run || run.health === RunHealth.UNSPECIFIED;
    attr(health, "data-health", healthName ?? "");
    attr(health, "title", run?.healthReason ?? ""); // why it is not HEALTHY; "" while it is
    text(health, enumWords(healthName));
    const viewers = $(this.root, ".viewers");
    viewers.hidden = !run || model.viewerCount <= 0;
    text($(viewers, "span"), run ? `${model.viewerCount} watching` : "");

    const started = millis(run?.startTime);
    const ended = millis(run?.endTime);
    const meta = [run?.workflow, started ? `started ${clock(started)}` : run ? "not started" : "", `${model.lastSeq} events`];
    text($(this.root, ".run-meta-text"), meta.filter(Boolean).join(" · "));
    text($(this.root, ".run-id"), this.session.runId);

    // The snapshot's percent counts the running step's own progress; a finished run is 100.
    const percent = status === RunStatus.SUCCEEDED ? 100 : Math.min(100, run?.progress?.percent ?? 0);
    const bar = $(this.root, ".progress");
    attr(bar, "data-percent", String(Math.floor(percent)));
    attr(bar, "data-state", status === RunStatus.SUCCEEDED ? "done" : isTerminal(status) ? "stopped" : status === RunStatus.RUNNING ? "running" : "idle");
    attr(bar, "aria-valuenow", String(Math.floor(percent)));
    ($(bar, ".progress-fill") as HTMLElement).style.width = `${percent}%`;
    text($(this.root, ".percent"), percentText(percent));

    const progress = run?.progress;
    const items = progress?.items;
    const counted = items !== undefined && ((progress?.totalSteps ?? 0) === 0 || progress?.unplanned === true);
    const steps = progress?.unplanned ? `${progress.completedSteps} steps done` : `${progress?.completedSteps} of ${progress?.totalSteps} steps`;
    text($(this.root, ".steps-count"), counted ? itemsText(items.completed, items.total, items.unit) : progress ? steps : "");
    const counter = $(this.root, ".item-progress");
    counter.hidden = items === undefined;
    if (items) {
      text($(counter, ".item-count"), String(items.completed));
      text($(counter, ".item-total"), items.total > 0n ? `of ${items.total}` : "");
      text($(counter, ".item-unit"), items.unit || "items");
      const stages = Object.entries(items.byStage);
      reconcile(
        $(counter, ".item-stages"),
        stages,
        ([stage]) => stage,
        () => h("li", { class: "chip" }),
        (el, [stage, count]) => text(el, `${enumWords(stage.toUpperCase())} ${count}`),
      );
    }
    const elapsed = started ? (ended ?? now) - started : undefined;
    text($(this.root, ".elapsed"), elapsed === undefined ? "" : `${isTerminal(status) ? "Took" : "Elapsed"} ${formatDuration(elapsed)}`);
    text($(this.root, ".eta"), etaText(this.session, now));

    const phases = $(this.root, ".phases");
    const phase = model.phase;
    phases.hidden = !phase || phase.stages.length === 0;
    if (phase) {
      const current = phase.stages.indexOf(phase.current);
      const done = status === RunStatus.SUCCEEDED;
      reconcile(
        phases,
        phase.stages,
        (s) => s,
        (s) => h("li", { class: "phase" }, h("span", { class: "phase-dot" }), s),
        (el, s) => {
          const index = phase.stages.indexOf(s);
          attr(el, "data-state", done || index < current ? "done" : index === current ? "current" : "next");
        },
      );
    }

    // The pipeline's flags, by name (code point order, as the CLI's): a map has no order of
    // its own to keep. Names as given, underscores as spaces ("QA_passed": "QA passed").
    const pipeline = $(this.root, ".pipeline");
    const flags = Object.entries(model.pipeline?.flags ?? {}).sort(byName);
    pipeline.hidden = flags.length === 0;
    reconcile(
      pipeline,
      flags,
      ([name]) => name,
      ([name]) => h("li", { class: "flag" }, h("span", { class: "flag-mark" }), name.replace(/_/g, " ")),
      (el, [, done]) => {
        attr(el, "data-done", String(done));
        text($(el, ".flag-mark"), done ? "\u2713" : "\u25cb");
      },
    );
  }

  /**
   * The decision cards, in the order they were asked. An answered card stays where it was,
   * showing its outcome, while any decision is open (the next card never slides under the
   * pointer); once none is, the RESOLVED_SHOWN closed last stay.
   */
  private renderDecisions(now: number): void {
    const decisions = this.sortedDecisions();
    for (const d of decisions) {
      if (isActive(d) || this.closedSeen.has(d.decisionId)) continue;
      this.closedSeen.add(d.decisionId);
      this.closedOrder.push(d.decisionId);
    }
    const anyOpen = decisions.some(isActive);
    const latest = new Set(this.closedOrder.slice(-RESOLVED_SHOWN));
    const shown = decisions.filter((d) => isActive(d) || latest.has(d.decisionId) || (anyOpen && this.decisionsShown.has(d.decisionId)));
    this.decisionsShown = new Set(shown.map((d) => d.decisionId));
    const section = $(this.root, ".decisions");
    section.hidden = shown.length === 0;
    reconcile(section, shown, (d) => d.decisionId, buildDecision, (el, d) => updateDecision(el, d, now, anyOpen));
  }

  private sortedDecisions(): DecisionItem[] {
    return [...this.session.model.decisions.values()].sort((a, b) => a.requestedSeq - b.requestedSeq);
  }

  private async onDecisionClick(event: MouseEvent): Promise<void> {
    const button = (event.target as Element).closest("button");
    const card = button?.closest<HTMLElement>("[data-decision-id]");
    if (!button || !card || button.disabled || button.getAttribute("aria-disabled") === "true") return;
    const id = card.dataset.decisionId ?? "";
    if (button.classList.contains("skip")) await this.session.answer(id, undefined);
    else if (button.dataset.choice !== undefined) await this.session.answer(id, button.dataset.choice);
    else return;
    // A click's `detail` is 0 when Enter or Space made it.
    this.focusAfterAnswer(card, event.detail === 0);
  }

  /**
   * Where focus goes once an answer came back. Taken: to the first option of the next open
   * decision (below, else the first above), so answering many goes on from the keyboard.
   * Closed otherwise (someone else answered first): to the card, which says so. Not taken
   * and still open: it stays on the option. A keyboard answer scrolls the next card into
   * view; a click's does not move the page under the pointer. Nothing moves focus that the
   * reader has since put elsewhere.
   */
  private focusAfterAnswer(card: HTMLElement, byKeyboard: boolean): void {
    const item = this.session.model.decisions.get(card.dataset.decisionId ?? "");
    const focused = document.activeElement;
    if (!item || isActive(item) || (focused && focused !== document.body && !card.contains(focused))) return;
    const open = this.sortedDecisions().filter((d) => d.open && d.submitting === undefined);
    const next = item.error ? undefined : (open.find((d) => d.requestedSeq > item.requestedSeq) ?? open[0]);
    const target = next && $(this.root, ".decisions").querySelector<HTMLElement>(`[data-decision-id="${CSS.escape(next.decisionId)}"] .options button`);
    (target ?? card).focus({ preventScroll: !byKeyboard });
  }

  private renderMetrics(): void {
    const { model } = this.session;
    const values = model.metrics();
    if (model.lastSeq !== this.lastMetricSeq) {
      this.lastMetricSeq = model.lastSeq;
      for (const [name, value] of values) {
        const history = this.metricHistory.get(name) ?? [];
        if (history[history.length - 1] !== value) history.push(value);
        if (history.length > 24) history.shift();
        this.metricHistory.set(name, history);
      }
    }
    const run = model.snapshot;
    const names = [...values.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, MAX_TILES);
    const tiles: Array<{ name: string; label: string; value: string; change: string; history: number[] }> = names.map((name) => ({
      name,
      label: metricLabel(name),
      value: metricWithUnit(name, values.get(name) ?? 0, model.metricUnit(name)),
      change: changeText(name, model.metricChange(name), model.metricUnit(name)),
      history: this.metricHistory.get(name) ?? [],
    }));
    if (run && !values.has("assets") && run.artifactsSummary && run.artifactsSummary.total > 0) {
      tiles.push({ name: "artifacts", label: "Artifacts", value: String(run.artifactsSummary.total), change: "", history: [] });
    }
    const container = $(this.root, ".tiles");
    container.hidden = tiles.length === 0;
    reconcile(
      container,
      tiles,
      (t) => t.name,
      (t) => h("div", { class: "tile", "data-metric": t.name }, h("div", { class: "tile-label" }), h("div", { class: "tile-value" }), h("div", { class: "tile-change" }), sparkline()),
      (el, t) => {
        text($(el, ".tile-label"), t.label);
        text($(el, ".tile-value"), t.value);
        const change = $(el, ".tile-change");
        text(change, t.change);
        attr(change, "data-sign", t.change.startsWith("−") ? "down" : t.change ? "up" : "");
        drawSparkline(el.querySelector("svg") as SVGSVGElement, t.history);
      },
    );
  }

  private renderSteps(steps: Step[], now: number): void {
    const list = $(this.root, ".steps");
    const long = steps.length > STEPS_ALL_SHOWN;
    reconcile(list, stepRows(steps, long && !this.allSteps), (r) => r.key, buildStepRow, (el, r) => updateStepRow(el, r, now));
    const toggle = $(this.root, ".steps-toggle");
    toggle.hidden = !long;
    attr(toggle, "aria-expanded", String(this.allSteps));
    text(toggle, this.allSteps ? "Show fewer" : `Show all ${steps.length.toLocaleString("en-US")}`);
    const run = this.session.model.snapshot;
    text($(this.root, ".steps-card .card-note"), run?.progress ? `${run.progress.completedSteps}/${run.progress.totalSteps}` : "");
    const empty = $(this.root, ".steps-empty");
    empty.hidden = steps.length > 0;
    text(empty, run?.progress?.items ? "No steps: this run counts items." : "No steps planned yet.");
  }

  private renderAgents(active: ActiveAgent[], now: number): void {
    // An ended run has no agent at work, even before the snapshot says so.
    const agents = isTerminal(this.session.model.status) ? [] : active;
    const list = $(this.root, ".agents");
    const empty = $(this.root, ".agents-empty");
    empty.hidden = agents.length > 0;
    text(empty, isTerminal(this.session.model.status) ? "The run has ended; no agent is at work." : "No agent is at work right now.");
    reconcile(
      list,
      agents,
      (a) => a.agentId,
      (a) =>
        h(
          "li",
          { class: "agent", "data-agent-id": a.agentId },
          avatar(a.name || a.agentId),
          h("div", { class: "agent-body" }, h("div", { class: "agent-name" }), h("div", { class: "agent-message" })),
          h("div", { class: "agent-since" }),
        ),
      (el, a) => {
        text($(el, ".agent-name"), a.name || a.agentId);
        text($(el, ".agent-message"), a.message || (a.stepId ? `on ${a.stepId}` : a.type));
        const since = millis(a.startTime);
        text($(el, ".agent-since"), since ? formatDuration(now - since) : "");
      },
    );
  }

  private renderOutput(): void {
    // Every message being written (newest first), then the latest finished ones: at least
    // 3, and as many as were written together lately.
    const { model } = this.session;
    const newest = [...model.texts].reverse();
    const writing = newest.filter((t) => !t.final);
    const shown = Math.max(3, writing.length, model.writtenTogether);
    const texts = [...writing, ...newest.filter((t) => t.final)].slice(0, shown);
    const list = $(this.root, ".outputs");
    $(this.root, ".outputs-empty").hidden = texts.length > 0;
    const grown: HTMLElement[] = [];
    reconcile(list, texts, (t) => t.messageId, buildOutput, (el, t) => {
      const box = updateOutput(el, t, this.session.model.stepNames);
      if (box) grown.push(box);
    });
    // Once every box has its text (and is on the page, a new one too): those that follow
    // their text show its end, the newest words, as the CLI shows a stream's last lines.
    for (const box of grown) if (box.dataset.follow !== "false") box.scrollTop = box.scrollHeight;
  }

  private renderThinking(): void {
    const thoughts = this.session.model.thoughts;
    const latest = thoughts[thoughts.length - 1];
    const card = $(this.root, ".thinking-card");
    $(card, ".thinking-empty").hidden = latest !== undefined;
    const body = $(card, ".thinking-body");
    body.hidden = latest === undefined;
    if (!latest) return;
    const t = latest.thinking;
    text($(body, ".thinking-stage"), t.stage || enumWords(t.thinkingType.toUpperCase()));
    text($(body, ".thinking-type"), [t.thinkingType.replace(/_/g, " "), t.reasoningDepth && `${t.reasoningDepth} reasoning`].filter(Boolean).join(" · "));
    text($(body, ".thinking-analysis"), t.analysis);
    const confidence = Math.round(t.confidence * 100);
    ($(body, ".confidence-fill") as HTMLElement).style.width = `${confidence}%`;
    text($(body, ".confidence-value"), t.confidence ? `${confidence}% confident` : "");
    reconcile($(body, ".factors"), t.factors, (f) => f, (f) => h("li", { class: "chip" }, f.replace(/_/g, " ")), () => undefined);
    const earlier = thoughts.slice(0, -1).reverse().slice(0, 3);
    reconcile(
      $(body, ".thinking-history"),
      earlier,
      (x) => String(x.seq),
      (x) => h("li", null, h("span", { class: "muted" }, x.thinking.stage || "Thinking"), " ", x.thinking.analysis),
      () => undefined,
    );
  }

  private renderModels(): void {
    const rows = [...this.session.model.allocations.values()].sort((a, b) => b.seq - a.seq).slice(0, MODELS_SHOWN);
    $(this.root, ".models-empty").hidden = rows.length > 0;
    reconcile(
      $(this.root, ".models"),
      rows,
      (r) => r.allocation.agentId,
      (r) =>
        h(
          "li",
          { class: "model-row" },
          avatar(r.allocation.agentId),
          h("div", { class: "model-body" }, h("div", { class: "model-agent" }), h("div", { class: "model-reason" })),
          h("div", { class: "model-side" }, h("span", { class: "model-chip" }), h("span", { class: "model-cost" })),
        ),
      (el, r) => {
        const a = r.allocation;
        text($(el, ".model-agent"), a.agentId);
        text($(el, ".model-reason"), a.reasoning);
        const chip = $(el, ".model-chip");
        text(chip, a.model);
        attr(chip, "data-tier", a.tier || "none");
        const facts = [a.contextWindow ? `${compact(Number(a.contextWindow))} ctx` : "", a.expectedCostUsd !== undefined ? `≈ ${money(a.expectedCostUsd)}` : ""];
        text($(el, ".model-cost"), facts.filter(Boolean).join(" · "));
      },
    );
  }

  /** Adds feed entries once each, newest on top, and never rebuilds those shown. */
  private renderFeed(now: number): void {
    const feed = $(this.root, ".feed");
    const fresh = this.session.model.feed.filter((item) => item.seq > this.renderedFeedSeq);
    const history = this.session.model.historySeq;
    for (const item of fresh) {
      const el = buildFeedItem(item);
      // Only what happens while watching slides in; replayed history just appears.
      if (item.seq > history) el.classList.add("live");
      feed.prepend(el);
      this.renderedFeedSeq = item.seq;
    }
    // Entries from before the oldest shown (a long run's feed filled in after its replayed
    // events) go below it.
    const oldest = Number((feed.lastElementChild as HTMLElement | null)?.dataset.seq);
    for (const item of this.session.model.feed.filter((i) => i.seq < oldest).reverse()) feed.append(buildFeedItem(item));
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild?.remove();
    $(this.root, ".feed-empty").hidden = feed.children.length > 0;
    const { model } = this.session;
    const more = $(this.root, ".load-older") as HTMLButtonElement;
    const state = this.session.older;
    const ended = this.session.olderEnd;
    more.hidden = model.startSeq === 0 || ended !== undefined;
    more.disabled = state === "loading";
    text(
      more,
      state === "loading" ? "Loading earlier activity…" : state === "failed" ? this.session.olderError || "Could not load; try again" : `Load earlier activity (events 1–${model.olderBefore - 1})`,
    );
    const end = $(this.root, ".older-end");
    end.hidden = model.startSeq === 0 || ended === undefined;
    text(end, ended === "purged" ? "Earlier activity was removed by the server's retention policy." : "This is the start of the run.");
    reconcile($(this.root, ".feed-older"), model.olderFeed, (item) => String(item.seq), buildFeedItem, () => undefined);
    for (const el of Array.from(feed.children) as HTMLElement[]) {
      const time = Number(el.dataset.time);
      if (time) text($(el, ".feed-ago"), ago(time, now));
    }
  }
}

// --- building blocks ------------------------------------------------------------------------

function buildSkeleton(runId: string): HTMLElement {
  const card = (cls: string, title: string, ...body: Array<Node | string>) =>
    h("section", { class: `card ${cls}` }, h("header", { class: "card-head" }, h("h2", null, title), h("span", { class: "card-note" })), ...body);
  const stepsCard = card("steps-card", "Steps", h("ol", { class: "steps" }), h("p", { class: "empty steps-empty", hidden: true }));
  $(stepsCard, ".card-head").append(h("button", { class: "steps-toggle", type: "button", hidden: true }));
  return h(
    "div",
    { class: "run-view", id: "run-view", "data-run-id": runId },
    h("div", { class: "run-error", hidden: true, role: "alert" }),
    h(
      "section",
      { class: "card run-head" },
      h(
        "div",
        { class: "title-row" },
        h("h1", { class: "run-title" }),
        h("span", { class: "pill status-pill" }),
        h("span", { class: "pill health-pill", hidden: true }),
        h("span", { class: "viewers", hidden: true }, icon("eye"), h("span")),
      ),
      h("div", { class: "run-meta" }, h("span", { class: "run-meta-text" }), h("code", { class: "run-id" })),
      h("ol", { class: "phases", hidden: true }),
      h("ul", { class: "pipeline", hidden: true, "aria-label": "Pipeline" }),
      h(
        "div",
        { class: "progress-row" },
        h("div", { class: "progress", role: "progressbar", "aria-label": "Run progress", "aria-valuemin": 0, "aria-valuemax": 100 }, h("div", { class: "progress-fill" })),
        h("div", { class: "percent" }),
      ),
      h("div", { class: "progress-meta" }, h("span", { class: "steps-count" }), h("span", { class: "elapsed" }), h("span", { class: "eta" })),
      h(
        "div",
        { class: "item-progress", hidden: true },
        h("span", { class: "item-count" }),
        h("span", { class: "item-total" }),
        h("span", { class: "item-unit" }),
        h("ul", { class: "item-stages" }),
      ),
      h(
        "div",
        { class: "controls", hidden: true },
        h("span", { class: "confirm-text" }),
        h("button", { class: "control", type: "button", "data-action": "pause", hidden: true }, "Pause"),
        h("button", { class: "control", type: "button", "data-action": "resume", hidden: true }, "Resume"),
        h("button", { class: "control danger", type: "button", "data-action": "cancel", hidden: true }, "Cancel run"),
        h("button", { class: "control danger", type: "button", "data-action": "confirm-cancel", hidden: true }, "Yes, cancel it"),
        h("button", { class: "control", type: "button", "data-action": "keep", hidden: true }, "Keep running"),
        h("span", { class: "control-error", role: "alert" }),
      ),
    ),
    h("div", { class: "decisions", hidden: true }),
    h("div", { class: "tiles", hidden: true }),
    h(
      "div",
      { class: "panels" },
      stepsCard,
      h(
        "div",
        { class: "column" },
        card("agents-card", "Active agents", h("ul", { class: "agents" }), h("p", { class: "empty agents-empty" })),
        card("outputs-card", "Agent output", h("div", { class: "outputs" }), h("p", { class: "empty outputs-empty" }, "Streamed text appears here as agents write it.")),
        card(
          "thinking-card",
          "Thinking",
          h("p", { class: "empty thinking-empty" }, "The manager's reasoning appears here."),
          h(
            "div",
            { class: "thinking-body", hidden: true },
            h("div", { class: "thinking-top" }, h("span", { class: "thinking-stage" }), h("span", { class: "thinking-type" })),
            h("blockquote", { class: "thinking-analysis" }),
            h("ul", { class: "factors" }),
            h("div", { class: "confidence" }, h("div", { class: "confidence-track" }, h("div", { class: "confidence-fill" })), h("span", { class: "confidence-value" })),
            h("ul", { class: "thinking-history" }),
          ),
        ),
      ),
      h(
        "div",
        { class: "column" },
        card(
          "feed-card",
          "Activity",
          h("p", { class: "empty feed-empty" }, "Waiting for activity…"),
          h("ol", { class: "feed", "aria-label": "Activity" }),
          h("ol", { class: "feed-older", "aria-label": "Earlier activity" }),
          h("button", { class: "load-older", type: "button", hidden: true }),
          h("p", { class: "empty older-end", hidden: true }),
        ),
        card("models-card", "Model allocation", h("ul", { class: "models" }), h("p", { class: "empty models-empty" }, "No model allocated yet.")),
      ),
    ),
  );
}

/** Orders [name, value] entries by name, in code point order (as the CLI's Python sorts). */
function byName([a]: [string, unknown], [b]: [string, unknown]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function statusLabel(status: RunStatus): string {
  return status === RunStatus.UNSPECIFIED ? "Loading" : enumWords(RunStatus[status]);
}

function etaText(session: RunSession, wallNow: number): string {
  const { model } = session;
  const run = model.snapshot;
  if (!run || isTerminal(model.status)) return "";
  const estimate = run.estimate;
  const end = millis(estimate?.endTime);
  // No finished run of the workflow to learn from: the server says nothing rather than guess.
  if (!estimate || end === undefined) return run.status === RunStatus.RUNNING ? "ETA unknown (no history yet)" : "";
  const whose = estimate.source === EstimateSource.PRODUCER ? " · producer's estimate" : "";
  if (estimate.held || model.status === RunStatus.WAITING_FOR_INPUT || model.status === RunStatus.PAUSED) {
    // The server holds the remaining time while the run waits: it is not counted down.
    const why = model.status === RunStatus.PAUSED ? "paused" : "waiting for input";
    return `ETA on hold: ${formatDuration(durationMillis(estimate.remaining) ?? 0)} left (${why})${whose}`;
  }
  // While the link is lost, the ETA stands still at the moment it was lost.
  const now = session.lostAt ?? wallNow;
  const left = Math.max(0, end - now);
  // The range was computed with the estimate; count it down with the estimate's own clock.
  const sinceEstimate = now - (end - (durationMillis(estimate.remaining) ?? 0));
  const low = durationMillis(estimate.remainingLow);
  const high = durationMillis(estimate.remainingHigh);
  let range = "";
  if (low !== undefined && high !== undefined) {
    const lowLeft = Math.max(0, low - sinceEstimate);
    const highLeft = Math.max(0, high - sinceEstimate);
    if (highLeft - lowLeft >= 1000) range = ` (${formatDuration(lowLeft)}–${formatDuration(highLeft)})`;
  }
  const stale = session.lostAt !== undefined ? " · frozen while offline" : "";
  // Past its estimate: due any moment, unless its producer went silent (then it is late).
  const due = run.health === RunHealth.STALLED ? "ETA overdue" : "ETA any moment";
  return (left < 1000 ? due : `ETA ${formatDuration(left)}${range}`) + whose + stale;
}

function itemsText(completed: bigint, total: bigint, unit: string): string {
  return total > 0n ? `${completed} of ${total} ${unit || "items"}` : `${completed} ${unit || "items"}`;
}

/** "5.0 %", "1,200 USD", or the value as its name suggests when it has no unit. */
function metricWithUnit(name: string, value: number, unit: string): string {
  if (!unit) return metricValue(name, value);
  if (unit === "%") return `${value.toFixed(1)} %`;
  return `${compact(value)} ${unit}`;
}

/** "+500", "−0.5 %", "+0.02%" for a rate, or "" for a metric reported once. */
function changeText(name: string, change: number | undefined, unit: string): string {
  if (change === undefined || change === 0) return "";
  const sign = change > 0 ? "+" : "−";
  const size = Math.abs(change);
  if (unit === "%") return `${sign}${size.toFixed(1)} %`;
  if (unit) return `${sign}${Number.isInteger(size) ? compact(size) : size.toFixed(2)} ${unit}`;
  return `${sign}${metricValue(name, size)}`;
}

function subStepDetailsText(step: Step): string {
  const d = step.subStepDetails;
  if (!d) return "";
  const end = millis(d.estimatedCompletionTime);
  return [d.operation.replace(/_/g, " "), d.model, end ? `done ~${clock(end)}` : ""].filter(Boolean).join(" · ");
}

function rank(name: string): number {
  const i = PREFERRED_METRICS.indexOf(name);
  return i < 0 ? PREFERRED_METRICS.length : i;
}

function avatar(name: string): HTMLElement {
  return h("span", { class: "avatar", style: `--hue: ${hue(name)}`, title: name }, initials(name));
}

function sparkline(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.innerHTML = '<polyline fill="none" points="" />';
  return svg;
}

function drawSparkline(svg: SVGSVGElement, values: number[]): void {
  const line = svg.firstElementChild as SVGPolylineElement;
  if (values.length < 2) {
    line.setAttribute("points", "");
    return;
  }
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  const points = values.map((v, i) => `${((i / (values.length - 1)) * 100).toFixed(1)},${(22 - ((v - min) / span) * 20).toFixed(1)}`).join(" ");
  if (line.getAttribute("points") !== points) line.setAttribute("points", points);
}

/**
 * A row of the step list: a step, the head of a phase its steps are grouped under, or a
 * folded stretch of steps (done, or still to come) in a long list.
 */
type StepRow =
  | { key: string; kind: "step"; step: Step }
  | { key: string; kind: "phase"; phase: string; state: "done" | "current" | "next" }
  | { key: string; kind: "folded"; settled: Settled; count: number };

/** Steps that no longer change (done), or only by starting (pending). */
type Settled = "done" | "pending";

function settledAs(step: Step): Settled | undefined {
  if (step.status === StepStatus.SUCCEEDED || step.status === StepStatus.SKIPPED) return "done";
  if (step.status === StepStatus.PENDING || step.status === StepStatus.UNSPECIFIED) return "pending";
  return undefined; // running or failed: always shown
}

/**
 * The step list's rows: the workflow graph, steps grouped under their phase. With `fold`, a
 * stretch of STRETCH_FOLDED or more done steps shows as one line and its last STRETCH_KEPT
 * steps, and a stretch of pending steps as its first STRETCH_KEPT steps and one line, so a
 * long list shows the steps at work and those around them, as the CLI's live view does.
 */
function stepRows(steps: Step[], fold: boolean): StepRow[] {
  const phases = new Map<string, { done: boolean; running: boolean }>();
  for (const step of steps) {
    if (!step.phase) continue;
    const phase = phases.get(step.phase) ?? { done: true, running: false };
    phase.done &&= settledAs(step) === "done";
    phase.running ||= step.status === StepStatus.RUNNING;
    phases.set(step.phase, phase);
  }
  const rows: StepRow[] = [];
  const show = (step: Step) => rows.push({ key: step.stepId, kind: "step", step });
  let stretch: Step[] = [];
  let stretchAs: Settled | undefined;
  const endStretch = () => {
    if (stretchAs === undefined || stretch.length < STRETCH_FOLDED) stretch.forEach(show);
    else {
      const folded: StepRow = { key: `folded:${stretch[0].stepId}`, kind: "folded", settled: stretchAs, count: stretch.length - STRETCH_KEPT };
      if (stretchAs === "pending") stretch.slice(0, STRETCH_KEPT).forEach(show);
      rows.push(folded);
      if (stretchAs === "done") stretch.slice(-STRETCH_KEPT).forEach(show);
    }
    stretch = [];
  };
  let phase = "";
  for (const step of steps) {
    const settled = fold ? settledAs(step) : undefined;
    const newPhase = step.phase !== "" && step.phase !== phase;
    if (settled !== stretchAs || newPhase) endStretch();
    stretchAs = settled;
    if (newPhase) {
      const { done, running } = phases.get(step.phase) ?? { done: false, running: false };
      rows.push({ key: `phase:${step.phase}`, kind: "phase", phase: step.phase, state: done ? "done" : running ? "current" : "next" });
    }
    phase = step.phase || phase;
    if (settled) stretch.push(step);
    else show(step);
  }
  endStretch();
  return rows;
}

function buildStepRow(row: StepRow): HTMLElement {
  if (row.kind === "phase") return h("li", { class: "phase-head" }, row.phase);
  if (row.kind === "folded") return h("li", { class: "steps-folded" });
  return buildStep(row.step);
}

function updateStepRow(el: HTMLElement, row: StepRow, now: number): void {
  if (row.kind === "phase") attr(el, "data-state", row.state);
  else if (row.kind === "folded") {
    attr(el, "data-settled", row.settled);
    const count = row.count.toLocaleString("en-US");
    text(el, row.settled === "done" ? `\u2713 ${count} earlier steps done` : `\u25cb ${count} more steps to come`);
  } else updateStep(el, row.step, now);
}

const STEP_ICONS: Record<number, string> = {
  [StepStatus.SUCCEEDED]: "check",
  [StepStatus.FAILED]: "x",
  [StepStatus.SKIPPED]: "skip",
  [StepStatus.RUNNING]: "dot",
};

/** A step row's parts, kept when it is built: a frame looks none of them up in the DOM. */
interface StepParts {
  icon: HTMLElement;
  title: HTMLElement;
  agent: HTMLElement;
  track: HTMLElement;
  detail: HTMLElement;
  time: HTMLElement;
  percent: HTMLElement;
  bar: HTMLElement;
  /** What the row shows but a running step's clock: while it is the same, the row is left alone. */
  shows: string;
}

const stepParts = new WeakMap<HTMLElement, StepParts>();

function buildStep(step: Step): HTMLElement {
  const parts: StepParts = {
    icon: h("span", { class: "step-icon" }),
    title: h("span", { class: "step-title" }),
    agent: h("span", { class: "step-agent" }),
    track: h("span", { class: "step-track", hidden: true }),
    detail: h("div", { class: "step-detail" }),
    time: h("span", { class: "step-time" }),
    percent: h("span", { class: "step-pct" }),
    bar: h("span"),
    shows: "",
  };
  const el = h(
    "li",
    { class: "step", "data-step-id": step.stepId },
    parts.icon,
    h("div", { class: "step-body" }, h("div", { class: "step-name" }, parts.title, parts.agent, parts.track), parts.detail, h("div", { class: "step-bar" }, parts.bar)),
    h("div", { class: "step-side" }, parts.time, parts.percent),
  );
  stepParts.set(el, parts);
  return el;
}

function updateStep(el: HTMLElement, step: Step, now: number): void {
  const parts = stepParts.get(el);
  if (!parts) return;
  const running = step.status === StepStatus.RUNNING;
  const start = millis(step.startTime);
  // Only a running step's clock moves by itself; the rest of a row moves with its step.
  if (running) text(parts.time, start ? formatDuration(now - start) : "");
  let detail = "";
  if (running) detail = [step.subStep, step.detail, subStepDetailsText(step)].filter(Boolean).join(" — ");
  else if (step.status === StepStatus.SUCCEEDED) detail = step.summary;
  else if (step.status === StepStatus.FAILED) detail = step.error?.message ?? "failed";
  else if (step.status === StepStatus.SKIPPED) detail = step.skipReason ? `Skipped: ${step.skipReason}` : "Skipped";
  else detail = [step.description, step.dependsOn.length ? `after ${step.dependsOn.join(", ")}` : ""].filter(Boolean).join(" · ");
  const end = millis(step.endTime);
  const took = durationMillis(step.duration) ?? (start && end ? end - start : undefined);
  const time = running || took === undefined || step.status === StepStatus.PENDING ? "" : formatDuration(took);
  const status = StepStatus[step.status] ?? "UNSPECIFIED";
  const shows = [status, step.name, step.agent, step.track, detail, time, step.percent].join("\u0000");
  if (parts.shows === shows) return;
  parts.shows = shows;
  if (el.dataset.status !== status) {
    el.dataset.status = status;
    parts.icon.replaceChildren(icon(STEP_ICONS[step.status] ?? "dot"));
  }
  text(parts.title, step.name || step.stepId);
  text(parts.agent, step.agent && step.agent !== step.name ? step.agent : "");
  parts.track.hidden = !step.track;
  text(parts.track, step.track);
  if (step.track) el.style.setProperty("--track-hue", String(hue(step.track)));
  text(parts.detail, detail);
  if (!running) text(parts.time, time);
  text(parts.percent, running ? `${Math.floor(step.percent)}%` : "");
  parts.bar.style.width = `${Math.min(100, step.percent)}%`;
}

/** Numbers the decision prompts' element ids ("decision-prompt-3"). */
let promptIds = 0;

/**
 * A decision's card: a group named by its prompt, whose options are described by it, so a
 * screen reader says which question an "Approve" answers.
 */
function buildDecision(d: DecisionItem): HTMLElement {
  const promptId = `decision-prompt-${++promptIds}`;
  const about = { type: "button", "aria-describedby": promptId };
  const options = d.options.map((o) =>
    h("button", { class: "option", "data-choice": o.value, title: o.description || null, ...about }, h("span", { class: "option-label" }, o.label || o.value), o.description ? h("small", null, o.description) : null),
  );
  // By name, the first CONTEXT_SHOWN and how many more, as the CLI shows a context.
  const entries = Object.entries(d.context ?? {}).sort(byName);
  const context = entries.slice(0, CONTEXT_SHOWN).map(([k, v]) => h("li", null, h("span", { class: "muted" }, metricLabel(k)), " ", jsonText(v, k)));
  if (entries.length > CONTEXT_SHOWN) context.push(h("li", { class: "muted" }, `+${entries.length - CONTEXT_SHOWN} more`));
  return h(
    "section",
    { class: "decision", "data-decision-id": d.decisionId, tabindex: -1, role: "group", "aria-labelledby": promptId },
    h("div", { class: "decision-icon" }, icon("question")),
    h(
      "div",
      { class: "decision-body" },
      h("div", { class: "decision-head" }, h("h3", null, "Input needed"), h("span", { class: "decision-type" }, d.decisionType.replace(/_/g, " ")), h("span", { class: "decision-deadline" })),
      h("p", { class: "decision-prompt", id: promptId }, d.prompt),
      context.length ? h("ul", { class: "decision-context" }, ...context) : null,
      h("div", { class: "options" }, ...options, d.canSkip ? h("button", { class: "skip", ...about }, "Skip") : null),
      h("p", { class: "decision-outcome", role: "status" }),
      h("p", { class: "decision-error", role: "alert" }),
    ),
  );
}

/** Open, or on its way to the server (this page's answer). */
function isActive(d: DecisionItem): boolean {
  return d.open || d.submitting !== undefined;
}

/**
 * `kept`: a closed card keeps its size (every option, the context) while other decisions
 * are open, so nothing below it moves; it shrinks to its question and outcome after.
 */
function updateDecision(el: HTMLElement, d: DecisionItem, now: number, kept: boolean): void {
  const state = d.submitting !== undefined ? "submitting" : d.open ? "open" : "resolved";
  if (el.dataset.state !== state) {
    el.dataset.state = state;
    $(el, ".decision-icon").replaceChildren(icon(state === "resolved" ? "check" : "question"));
  }
  el.toggleAttribute("data-kept", state === "resolved" && kept);
  for (const button of Array.from(el.querySelectorAll("button"))) {
    // While the answer is on its way the options only say they are unavailable: a disabled
    // button would drop the keyboard focus on the page's body.
    button.disabled = state === "resolved";
    if (state === "submitting") button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    button.classList.toggle("chosen", state !== "open" && (button.dataset.choice === (d.submitting ?? d.choice) && button.dataset.choice !== undefined));
  }
  const deadline = $(el, ".decision-deadline");
  const left = d.deadline !== undefined ? d.deadline - now : undefined;
  const fallback = d.defaultOption ? `, then “${d.options.find((o) => o.value === d.defaultOption)?.label || d.defaultOption}”` : "";
  text(deadline, state === "open" && left !== undefined ? `closes in ${formatDuration(Math.max(0, left))}${fallback}` : "");
  let outcome = "";
  if (state === "submitting") outcome = "Sending your answer…";
  else if (state === "resolved") {
    const label = d.options.find((o) => o.value === d.choice)?.label || d.choice;
    if (d.outcome === DecisionOutcome.ANSWERED) outcome = `Answered “${label}”${d.answeredBy ? ` by ${d.answeredBy}` : ""}`;
    else if (d.outcome === DecisionOutcome.DEFAULTED) outcome = `No answer in time: went with “${label}”`;
    else if (d.outcome !== DecisionOutcome.UNSPECIFIED) outcome = enumWords(DecisionOutcome[d.outcome]);
    else outcome = "Closed"; // how is not known yet (its DecisionResolved has not come)
  }
  text($(el, ".decision-outcome"), outcome);
  text($(el, ".decision-error"), d.error ?? "");
  text($(el, ".decision-head h3"), state === "resolved" ? "Decision made" : "Input needed");
}

/** How near its end (px) an output box counts as at its end: it then follows the text. */
const AT_END_PX = 8;

function buildOutput(t: StreamedText): HTMLElement {
  const box = h("p", { class: "output-text" });
  // Whether the box follows the text: it does until the reader scrolls it up, and again once
  // they scroll back to its end. (The box's own scrolls to the end say so too.)
  const atEnd = () => box.scrollHeight - box.scrollTop - box.clientHeight < AT_END_PX;
  box.addEventListener("scroll", () => void (box.dataset.follow = String(atEnd())), { passive: true });
  return h(
    "article",
    { class: "output", "data-message-id": t.messageId },
    h("header", null, avatar(t.agentId), h("span", { class: "output-agent" }, t.agentId), h("span", { class: "output-step" }), h("span", { class: "output-state" })),
    box,
  );
}

/** Updates a message's box; returns its text element when the text grew or changed. */
function updateOutput(el: HTMLElement, t: StreamedText, stepNames: ReadonlyMap<string, string>): HTMLElement | undefined {
  attr(el, "data-final", String(t.final));
  text($(el, ".output-step"), stepNames.get(t.stepId) ?? t.stepId);
  // A message whose start the page lacks says so: "…" in front, and where its text begins.
  const start = textStart(t);
  attr(el, "data-partial", String(start !== ""));
  text($(el, ".output-state"), [t.final ? "done" : "writing…", start].filter(Boolean).join(" · "));
  const full = start ? `…${t.text}` : t.text;
  const box = $(el, ".output-text");
  const shown = box.firstChild instanceof Text ? box.firstChild : undefined;
  if (shown?.data === full) return undefined;
  // New words are appended to what is shown (the box is not laid out anew from its start);
  // a text cut at its start, or whose start was read back, is set whole.
  if (shown && full.startsWith(shown.data)) shown.appendData(full.slice(shown.data.length));
  else box.textContent = full;
  return box;
}

function buildFeedItem(item: FeedItem): HTMLElement {
  return h(
    "li",
    { class: "feed-item", "data-seq": item.seq, "data-kind": EventKind[item.kind], "data-tone": item.tone, "data-time": item.time ?? "" },
    h("span", { class: "feed-icon" }, icon(item.icon)),
    h(
      "div",
      { class: "feed-body" },
      h("div", { class: "feed-title" }, item.title),
      item.detail ? h("div", { class: "feed-detail" }, item.detail) : null,
      h("div", { class: "feed-meta" }, item.who ? h("span", null, item.who) : null, h("span", { class: "feed-ago" }), h("span", { class: "feed-seq" }, `#${item.seq}`)),
      item.action ? h("button", { class: "feed-action", type: "button", "data-action": item.action.action }, item.action.label) : null,
    ),
  );
}
