// The run page's step list: the workflow's steps grouped under their phases, each row
// redrawn only when what it shows changed; a long list folds the stretches of done or pending
// steps away from the steps at work, as the CLI's live view shows the steps around the current
// one, until "Show all".
import { type Artifact, type Step, StepStatus } from "../../gen/runstream/v1/run_pb";
import { $, attr, h, icon, reconcile, text } from "../dom";
import { byName, clock, durationMillis, formatDuration, hue, metricLabel, metricValue, millis } from "../format";
import type { RunSession } from "../session";

/** A step list this long or shorter shows every step; a longer one folds long stretches. */
const STEPS_ALL_SHOWN = 50;
/** How many done (or pending) steps in a row fold into one line, in a long list ... */
const STRETCH_FOLDED = 8;
/** ... and how many of them stay beside the steps at work. */
const STRETCH_KEPT = 3;
/** How many of a step's artifacts, and of its metrics, its row lists (then "+N more"). */
const ARTIFACTS_SHOWN = 4;
const METRICS_SHOWN = 6;

export class StepList {
  /** Whether a long list shows every step (the steps card's "Show all"). */
  private all = false;

  /** `root`: the run page, whose steps card this fills; `changed` redraws the page. */
  constructor(
    private readonly root: HTMLElement,
    private readonly session: RunSession,
    changed: () => void,
  ) {
    $(root, ".steps-toggle").addEventListener("click", () => {
      this.all = !this.all;
      changed();
    });
  }

  /** Shows `steps` (the snapshot's, with the events since folded in) as of `now`. */
  render(steps: Step[], now: number): void {
    const list = $(this.root, ".steps");
    const long = steps.length > STEPS_ALL_SHOWN;
    reconcile(list, stepRows(steps, long && !this.all), (r) => r.key, buildStepRow, (el, r) => updateStepRow(el, r, now));
    const toggle = $(this.root, ".steps-toggle");
    toggle.hidden = !long;
    attr(toggle, "aria-expanded", String(this.all));
    text(toggle, this.all ? "Show fewer" : `Show all ${steps.length.toLocaleString("en-US")}`);
    const run = this.session.model.snapshot;
    text($(this.root, ".steps-card .card-note"), run?.progress ? `${run.progress.completedSteps}/${run.progress.totalSteps}` : "");
    const empty = $(this.root, ".steps-empty");
    empty.hidden = steps.length > 0;
    text(empty, run?.progress?.items ? "No steps: this run counts items." : "No steps planned yet.");
  }
}

/**
 * A row of the step list: a step, the head of a phase its steps are grouped under, or a
 * folded stretch of steps (done, or still to come) in a long list.
 */
type StepRow =
  | { key: string; kind: "step"; step: Step }
  | { key: string; kind: "phase"; phase: string; state: PhaseState }
  | { key: string; kind: "folded"; settled: Settled; count: number };

/** A phase head's state: a failed step marks its phase failed, whatever else of it is at work. */
type PhaseState = "failed" | "current" | "done" | "next";

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
  const phases = new Map<string, { done: boolean; running: boolean; failed: boolean }>();
  for (const step of steps) {
    if (!step.phase) continue;
    const phase = phases.get(step.phase) ?? { done: true, running: false, failed: false };
    phase.done &&= settledAs(step) === "done";
    phase.running ||= step.status === StepStatus.RUNNING;
    phase.failed ||= step.status === StepStatus.FAILED;
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
      const { done, running, failed } = phases.get(step.phase) ?? { done: false, running: false, failed: false };
      const state: PhaseState = failed ? "failed" : running ? "current" : done ? "done" : "next";
      rows.push({ key: `phase:${step.phase}`, kind: "phase", phase: step.phase, state });
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
  /** The step's artifacts and metrics, under its detail. */
  artifacts: HTMLElement;
  metrics: HTMLElement;
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
    artifacts: h("ul", { class: "step-artifacts", hidden: true, "aria-label": "Artifacts" }),
    metrics: h("div", { class: "step-metrics", hidden: true }),
    time: h("span", { class: "step-time" }),
    percent: h("span", { class: "step-pct" }),
    bar: h("span"),
    shows: "",
  };
  const el = h(
    "li",
    { class: "step", "data-step-id": step.stepId },
    parts.icon,
    h(
      "div",
      { class: "step-body" },
      h("div", { class: "step-name" }, parts.title, parts.agent, parts.track),
      parts.detail,
      parts.artifacts,
      parts.metrics,
      h("div", { class: "step-bar" }, parts.bar),
    ),
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
  const artifacts = step.artifacts.map((a) => `${a.name}\u0001${a.uri}`).join("\u0002");
  const metrics = Object.entries(step.metrics).sort(byName);
  const shows = [status, step.name, step.agent, step.track, detail, time, step.percent, artifacts, metrics.join("\u0002")].join("\u0000");
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
  showArtifacts(parts.artifacts, step.artifacts);
  parts.metrics.hidden = metrics.length === 0;
  const listed = metrics.slice(0, METRICS_SHOWN).map(([name, value]) => `${metricLabel(name)} ${metricValue(name, value)}`);
  if (metrics.length > METRICS_SHOWN) listed.push(`+${metrics.length - METRICS_SHOWN} more`);
  text(parts.metrics, listed.join(" · "));
  if (!running) text(parts.time, time);
  text(parts.percent, running ? `${Math.floor(step.percent)}%` : "");
  parts.bar.style.width = `${Math.min(100, step.percent)}%`;
}

/**
 * A step's artifacts, the first ARTIFACTS_SHOWN: each by its name, a link when its URI is a
 * web address (http or https, opened in a new tab), else the URI beside it as text (an
 * s3:// or file path to copy; a javascript: or data: URI is never a link).
 */
function showArtifacts(list: HTMLElement, artifacts: Artifact[]): void {
  list.hidden = artifacts.length === 0;
  const items = artifacts.slice(0, ARTIFACTS_SHOWN).map((a) => {
    const label = a.name || a.uri || a.artifactId;
    const href = webAddress(a.uri);
    return h(
      "li",
      { class: "artifact", title: a.kind ? `${a.kind}: ${a.uri || a.name}` : a.uri || a.name },
      icon("file"),
      href ? h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label) : h("span", { class: "artifact-name" }, label),
      !href && a.uri && a.uri !== label ? h("span", { class: "artifact-uri" }, a.uri) : null,
    );
  });
  if (artifacts.length > ARTIFACTS_SHOWN) items.push(h("li", { class: "artifact more" }, `+${artifacts.length - ARTIFACTS_SHOWN} more`));
  list.replaceChildren(...items);
}

/** The URI when it is an absolute http(s) address, else undefined. */
function webAddress(uri: string): string | undefined {
  try {
    const url = new URL(uri);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : undefined;
  } catch {
    return undefined; // relative, or no URI at all
  }
}

function subStepDetailsText(step: Step): string {
  const d = step.subStepDetails;
  if (!d) return "";
  const end = millis(d.estimatedCompletionTime);
  return [d.operation.replace(/_/g, " "), d.model, end ? `done ~${clock(end)}` : ""].filter(Boolean).join(" · ");
}
