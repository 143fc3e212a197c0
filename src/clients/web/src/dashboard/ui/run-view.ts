// The run page: header with the progress bar, decisions (./decision-cards), metric tiles
// (./metric-tiles), steps (./step-list), active agents, streamed agent output, thinking, model
// allocations and the activity feed (./activity-feed).
import { type ActiveAgent, EstimateSource, RunHealth, RunStatus } from "../../gen/runstream/v1/run_pb";
import { serverNow } from "../clock";
import { $, attr, h, icon, reconcile, text } from "../dom";
import {
  byName,
  clock,
  compact,
  durationMillis,
  enumWords,
  formatDuration,
  hue,
  initials,
  millis,
  money,
  percentText,
} from "../format";
import { type RunAction, type StreamedText, allowedActions, isTerminal, textStart } from "../model";
import type { RunSession } from "../session";
import { ActivityFeed } from "./activity-feed";
import { DecisionCards } from "./decision-cards";
import { MetricTiles } from "./metric-tiles";
import { StepList } from "./step-list";

export class RunView {
  readonly root: HTMLElement;
  private readonly decisions: DecisionCards;
  private readonly steps: StepList;
  private readonly tiles: MetricTiles;
  private readonly feed: ActivityFeed;

  constructor(private readonly session: RunSession) {
    this.root = buildSkeleton(session.runId);
    this.decisions = new DecisionCards($(this.root, ".decisions"), session);
    this.steps = new StepList(this.root, session, () => this.render());
    this.tiles = new MetricTiles($(this.root, ".tiles"), session);
    this.feed = new ActivityFeed($(this.root, ".feed-card"), session, () => this.confirmCancel());
    $(this.root, ".controls").addEventListener("click", (event) => this.onControlClick(event));
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

  /** An alert in the feed suggesting a cancel opens the same confirmation as the header's
   * button. */
  private confirmCancel(): void {
    $(this.root, ".controls").dataset.confirm = "cancel";
    $(this.root, ".run-head").scrollIntoView({ block: "start" });
    this.render();
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
    this.decisions.render(now);
    this.tiles.render();
    if (run) {
      this.steps.render(run.steps, now);
      this.renderAgents(run.activeAgents, now);
    }
    this.renderOutput();
    this.renderThinking();
    this.renderModels();
    this.feed.render(now);
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
    const rows = this.session.model.shownAllocations();
    $(this.root, ".models-empty").hidden = rows.length > 0;
    reconcile(
      $(this.root, ".models"),
      rows,
      (r) => r.allocation.agentId,
      (r) =>
        h(
          "li",
          { class: "model-row", "data-agent-id": r.allocation.agentId },
          avatar(r.allocation.agentId),
          h(
            "div",
            { class: "model-body" },
            h("div", { class: "model-agent" }),
            h("div", { class: "model-reason" }, h("span", { class: "model-reason-for" }), h("span", { class: "model-reason-text" })),
          ),
          h("div", { class: "model-side" }, h("span", { class: "model-chip" }), h("span", { class: "model-cost" })),
        ),
      (el, r) => {
        // The model the agent uses now; the reasoning of the newest allocation that gave one.
        // When that chose another model (the manager's o3, before the node called another),
        // the reasoning says which: "o3 allocated: ...".
        const a = r.allocation;
        const why = a.reasoning ? undefined : r.reasoned?.allocation;
        const same = why !== undefined && why.model === a.model;
        text($(el, ".model-agent"), a.agentId);
        const reason = a.reasoning || why?.reasoning || "";
        const reasonFor = why && !same ? `${why.model} allocated: ` : "";
        text($(el, ".model-reason-for"), reasonFor);
        text($(el, ".model-reason-text"), reason);
        attr($(el, ".model-reason"), "title", reasonFor + reason);
        // What the newest left out, the reasoned allocation of the same model says.
        const facts = same ? why : undefined;
        const tier = a.tier || facts?.tier || "";
        const contextWindow = a.contextWindow || facts?.contextWindow || 0n;
        const cost = a.expectedCostUsd ?? facts?.expectedCostUsd;
        const chip = $(el, ".model-chip");
        text(chip, a.model);
        attr(chip, "title", a.model); // a long name is cut short
        attr(chip, "data-tier", tier || "none");
        const shown = [contextWindow ? `${compact(Number(contextWindow))} ctx` : "", cost !== undefined ? `≈ ${money(cost)}` : ""];
        text($(el, ".model-cost"), shown.filter(Boolean).join(" · "));
      },
    );
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

function avatar(name: string): HTMLElement {
  return h("span", { class: "avatar", style: `--hue: ${hue(name)}`, title: name }, initials(name));
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

