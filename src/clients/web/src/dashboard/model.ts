// What the dashboard knows about one run: the server's snapshot (progress, steps, agents,
// status), refreshed on state-changing events, plus what only the event stream carries: the
// activity feed, streamed agent text, the manager's thinking, model allocations, metrics
// between snapshots, milestones and decisions.
import { create, type JsonObject } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AgentActivityType,
  AlertActionType,
  DecisionOutcome,
  EventKind,
  type DecisionOption,
  type ModelAllocation,
  type RunEvent,
  RunEventSchema,
  type Thinking,
} from "../gen/runstream/v1/event_pb";
import { type Run, RunHealth, RunStatus, Severity, type Step, StepSchema, StepStatus } from "../gen/runstream/v1/run_pb";
import type { Decision } from "../gen/runstream/v1/decision_pb";
import type { GetRunResponse } from "../gen/runstream/v1/run_service_pb";
import { fieldsText } from "./fields";
import { durationMillis, enumWords, formatDuration, jsonText, millis } from "./format";

/** How many entries the activity feed keeps. */
export const FEED_LIMIT = 50;

/** How many thoughts the thinking panel keeps (the newest, from the last one back). */
export const THOUGHTS_KEPT = 6;

/** How many streamed messages the page keeps: every one being written, up to this many. */
export const TEXTS_KEPT = 16;

/** The most characters the page keeps of a streamed message: its end, once it is longer. */
export const TEXT_CHARS = 6000;

/** How many agents the models panel lists: those with the newest allocations. */
export const MODELS_SHOWN = 8;

/**
 * The event kinds the feed leaves out on purpose, shown elsewhere: streamed text, thinking
 * and model allocations in their panels (apply()); step and item progress, metrics and
 * estimates in the snapshot's panels (SNAPSHOT_KINDS), metrics also from the events.
 */
export const NOT_IN_FEED: readonly EventKind[] = [
  EventKind.STEP_PROGRESS,
  EventKind.ITEM_PROGRESS,
  EventKind.THINKING,
  EventKind.MODEL_ALLOCATION,
  EventKind.TEXT_DELTA,
  EventKind.METRICS_UPDATE,
  EventKind.ESTIMATE_UPDATED,
];

const PAYLOADS = RunEventSchema.oneofs[0].fields;

const KIND_BY_CASE = new Map<string, EventKind>(PAYLOADS.map((field) => [field.localName, field.number as EventKind]));

/** Each kind's payload message, by its case: what describe() says a kind it has no case for from. */
const PAYLOAD_BY_CASE = new Map(PAYLOADS.flatMap((field) => (field.message ? [[field.localName, field.message] as const] : [])));

/**
 * The event kinds the activity feed shows: every kind of this build's protos but those in
 * NOT_IN_FEED. describe() has a line for each of them: its own, or the kind's name and the
 * fields its producer set, for a kind it has no case for.
 */
export const FEED_KINDS: readonly EventKind[] = [...KIND_BY_CASE.values()].filter((kind) => !NOT_IN_FEED.includes(kind));
const FEED_KIND_SET = new Set(FEED_KINDS);

/** Event kinds after which the snapshot (progress, steps, agents, status) is stale. */
const SNAPSHOT_KINDS = new Set<EventKind>([
  ...FEED_KINDS,
  EventKind.STEP_PROGRESS,
  EventKind.ITEM_PROGRESS,
  EventKind.METRICS_UPDATE,
  EventKind.ESTIMATE_UPDATED,
]);

/** The event's kind, or undefined for a kind this build of the dashboard does not know. */
export function kindOf(event: RunEvent): EventKind | undefined {
  return event.payload.case === undefined ? undefined : KIND_BY_CASE.get(event.payload.case);
}

export type Tone = "neutral" | "info" | "success" | "warning" | "danger" | "accent";

/** What a button in the run page does to the run: RunService.PauseRun, ResumeRun, CancelRun. */
export type RunAction = "pause" | "resume" | "cancel";

export interface FeedItem {
  seq: number;
  kind: EventKind;
  time: number | undefined;
  icon: string;
  tone: Tone;
  title: string;
  detail: string;
  who: string;
  /** An alert's suggested action, offered as a button. */
  action?: { action: RunAction; label: string };
}

const ALERT_ACTIONS: Partial<Record<AlertActionType, RunAction>> = {
  [AlertActionType.PAUSE_RUN]: "pause",
  [AlertActionType.RESUME_RUN]: "resume",
  [AlertActionType.CANCEL_RUN]: "cancel",
};

/** Which of pause, resume and cancel a run's status allows. */
export function allowedActions(status: RunStatus): Set<RunAction> {
  if (status === RunStatus.RUNNING || status === RunStatus.WAITING_FOR_INPUT) return new Set(["pause", "cancel"]);
  if (status === RunStatus.PAUSED) return new Set(["resume", "cancel"]);
  if (status === RunStatus.PENDING) return new Set(["cancel"]);
  return new Set();
}

export interface StreamedText {
  messageId: string;
  agentId: string;
  stepId: string;
  text: string;
  final: boolean;
  /** The seq of the first of its deltas the page has. */
  firstSeq: number;
  /**
   * The page may not have its start: it was first seen in a long run's replayed events, and
   * reading back from there did not reach the run's start. Its text is what was written from
   * firstSeq on. (One first seen after those events is taken to begin there: only an agent
   * silent through all of them could have begun it before.)
   */
  startUnseen: boolean;
  /** It is longer than TEXT_CHARS: only its end is kept. */
  cut: boolean;
}

/** Where a message's text begins when the page lacks its start ("" when it has it all). */
export function textStart(t: StreamedText): string {
  if (t.cut) return `last ${TEXT_CHARS.toLocaleString("en-US")} characters`;
  return t.startUnseen ? `from #${t.firstSeq} on` : "";
}

export interface ThoughtItem {
  seq: number;
  time: number | undefined;
  thinking: Thinking;
}

/**
 * An agent's model allocation, as the models panel shows it: the newest one (the model the
 * agent uses now), and the newest one that said why, when that is another. An integration
 * reports each model an agent calls (LangChain's handler, the OpenAI Agents processor) with
 * no reasoning: the manager's reasoned choice stays readable beside it, not replaced.
 */
export interface AllocationItem {
  seq: number;
  allocation: ModelAllocation;
  /** The newest allocation for the agent that gave its reasoning; undefined while none did. */
  reasoned?: { seq: number; allocation: ModelAllocation };
}

export interface DecisionItem {
  decisionId: string;
  prompt: string;
  decisionType: string;
  options: DecisionOption[];
  canSkip: boolean;
  defaultOption: string;
  deadline: number | undefined;
  context: JsonObject | undefined;
  requestedSeq: number;
  open: boolean;
  outcome: DecisionOutcome;
  choice: string;
  answeredBy: string;
  /** Set while this page's answer is on its way; cleared by the response or an error. */
  submitting: string | undefined;
  error: string | undefined;
  /**
   * Why the server refused this page's answer for good (another answer, or the deadline,
   * closed the decision first): unlike `error`, the decision's DecisionResolved, which often
   * comes before the refusal does, leaves it standing.
   */
  refusal: string | undefined;
}

export interface Toast {
  seq: number;
  /** For an "input needed" toast: the decision, so the toast leaves once it is answered. */
  decisionId?: string;
  title: string;
  detail: string;
  tone: Tone;
}

export class RunModel {
  snapshot: Run | undefined;
  /** The seq up to which history was already there when the page opened the run. */
  historySeq = -1;
  /**
   * A long run opens from its snapshot: events up to this seq were not replayed (the feed
   * is filled in from before them, older entries load on demand). 0 when the whole log was
   * replayed.
   */
  startSeq = 0;
  /**
   * Older feed entries loaded on demand (ListEvents), newest first; once they are, the
   * entries the feed drops past FEED_LIMIT join them on top.
   */
  olderFeed: FeedItem[] = [];
  /** The oldest seq the reads of older activity reached; 0 before the first was asked for. */
  private olderRead = 0;
  lastSeq = 0;
  /**
   * The run's watchers as the run list has them: WatchRuns sends the run again whenever the
   * count changes, also while no event comes, and the list merges each newer snapshot.
   * Undefined while the list does not have the run (the snapshot's count then).
   */
  listedViewers: number | undefined;
  status: RunStatus = RunStatus.UNSPECIFIED;
  feed: FeedItem[] = [];
  texts: StreamedText[] = [];
  /**
   * How many messages were written at once, at most, since a message last started while no
   * other was being written: the output panel shows that many (six judges' verdicts stay
   * on the page once all six are written).
   */
  writtenTogether = 0;
  thoughts: ThoughtItem[] = [];
  allocations = new Map<string, AllocationItem>();
  decisions = new Map<string, DecisionItem>();
  phase: { current: string; stages: string[] } | undefined;
  /** The seq of the event the phase comes from. */
  private phaseSeq = 0;
  /** The seq of the event that listed the phase's stages (a later one may name only the current). */
  private phaseStagesSeq = 0;
  /** The pipeline's flags ("files_processed": true), from the newest change that gave any. */
  pipeline: { seq: number; flags: Record<string, boolean> } | undefined;
  /** Step names by id, from the plan and from steps added when they started. */
  readonly stepNames = new Map<string, string>();
  private metricOverlay = new Map<string, { value: number; seq: number }>();
  private changeOverlay = new Map<string, { value: number | undefined; seq: number }>();
  private unitOverlay = new Map<string, string>();
  /** Step events newer than the snapshot, replayed onto each snapshot until it has them. */
  private stepEvents: RunEvent[] = [];
  private textById = new Map<string, StreamedText>();
  private pendingToasts: Toast[] = [];

  constructor(readonly runId: string) {}

  /** How many are watching the run now, on every replica. */
  get viewerCount(): number {
    return this.listedViewers ?? this.snapshot?.viewerCount ?? 0;
  }

  /** Applies a GetRun answer unless an answer about a later seq was already applied. */
  applySnapshot(response: GetRunResponse): boolean {
    const run = response.run;
    if (!run) return false;
    if (this.snapshot && run.lastSeq < this.snapshot.lastSeq) return false;
    this.snapshot = run;
    this.stepEvents = this.stepEvents.filter((event) => event.seq > run.lastSeq);
    for (const event of this.stepEvents) patchSteps(run, event);
    if (this.historySeq < 0) this.historySeq = Number(run.lastSeq);
    for (const step of run.steps) if (step.name) this.stepNames.set(step.stepId, step.name);
    if (Number(run.lastSeq) >= this.lastSeq) this.status = run.status;
    return true;
  }

  /**
   * Starts a long run from its snapshot instead of its whole log: the open decisions from the
   * snapshot, the cursor at `from` (the events after it are replayed, filling the feed and
   * the panels; addFeedHistory fills the rest of the feed). Not the snapshot's recent
   * activity: it holds agent activity only, and between its entries the feed would leave
   * out the steps, alerts and decisions as if there were none.
   */
  seedFromSnapshot(response: GetRunResponse, from: number): void {
    const run = response.run;
    if (!run) return;
    this.applySnapshot(response);
    this.startSeq = from;
    this.lastSeq = from;
    this.status = run.status;
    for (const decision of response.openDecisions) this.decisions.set(decision.decisionId, decisionItem(decision));
  }

  /**
   * Feed entries from before the oldest one shown, as ListEvents brought them (newest first,
   * of the feed's kinds): a long run's feed filled in up to FEED_LIMIT entries when its
   * replayed events gave fewer, as a page open all along shows it.
   */
  addFeedHistory(events: RunEvent[]): void {
    const oldest = this.feed[0]?.seq ?? Infinity;
    const items = events.filter((event) => Number(event.seq) < oldest).map((event) => this.historyItem(event));
    this.feed.unshift(...items.filter((item) => item !== undefined).reverse());
    this.trimFeed();
  }

  /** The feed entry of an event read back (not applied: the snapshot stands for it). */
  private historyItem(event: RunEvent): FeedItem | undefined {
    const kind = kindOf(event);
    if (kind === undefined || !FEED_KIND_SET.has(kind)) return undefined;
    if (event.payload.case === "runCreated") for (const step of event.payload.value.steps) this.stepNames.set(step.stepId, step.name || step.stepId);
    return describe(event, kind, this);
  }

  /** Keeps the newest FEED_LIMIT entries; once older ones were asked for, those dropped go on top of them. */
  private trimFeed(): void {
    if (this.feed.length <= FEED_LIMIT) return;
    const dropped = this.feed.splice(0, this.feed.length - FEED_LIMIT);
    if (this.olderRead > 0) this.olderFeed.unshift(...dropped.reverse());
  }

  /**
   * Thinking, model allocations and phases from before the replayed events (ListEvents), in
   * any order: added behind what the replay showed, never over it.
   */
  addPanelHistory(events: RunEvent[]): void {
    for (const event of [...events].sort((a, b) => Number(a.seq) - Number(b.seq))) {
      const seq = Number(event.seq);
      const p = event.payload;
      if (p.case === "workflowStateChange") this.setPipeline(seq, p.value.pipelineStatus);
      if (p.case === "thinking" && !this.thoughts.some((t) => t.seq === seq)) {
        this.thoughts.push({ seq, time: millis(event.eventTime), thinking: p.value });
      } else if (p.case === "modelAllocation") {
        this.allocate(seq, p.value);
      } else if (p.case === "workflowStateChange" && seq > this.phaseSeq && (p.value.stages.length > 0 || p.value.currentStage)) {
        this.setPhase(seq, p.value.currentStage, p.value.stages);
      } else if (p.case === "workflowStateChange" && this.phase && seq > this.phaseStagesSeq && p.value.stages.length > 0) {
        // A replayed phase that named only its current stage lists the stages an earlier
        // change gave, as on a page open all along.
        this.phase.stages = [...p.value.stages];
        this.phaseStagesSeq = seq;
      }
    }
    this.thoughts.sort((a, b) => a.seq - b.seq);
    if (this.thoughts.length > THOUGHTS_KEPT) this.thoughts.splice(0, this.thoughts.length - THOUGHTS_KEPT);
  }

  /**
   * Older activity loads from just below this seq: the oldest entry the feed shows (every
   * entry of the feed's kinds from there on is shown: the replayed events' newest, filled in
   * from before them when they gave fewer than FEED_LIMIT), or the first event replayed
   * while the feed is empty; and once older activity was asked for, the oldest event its
   * pages brought. Events 1 to olderBefore - 1 are what is left to load.
   */
  get olderBefore(): number {
    if (this.olderRead > 0) return this.olderRead;
    return this.feed[0]?.seq ?? this.startSeq + 1;
  }

  /**
   * The seq older activity is read below, fixed when it is first asked for: from then on the
   * feed's later changes no longer move where older pages go, and the entries live events
   * push out of the feed join the older ones instead (nothing between the two is lost).
   */
  beginOlder(): number {
    if (this.olderRead === 0) this.olderRead = this.olderBefore;
    return this.olderRead;
  }

  /**
   * Adds a page of older events (newest first: ListEvents "seq desc") that ListEvents
   * brought, listed below beginOlder()'s seq: those of the feed's kinds go under the older
   * entries shown so far. Returns how many entries it added.
   */
  addOlder(events: RunEvent[]): number {
    const shown = new Set([...this.feed, ...this.olderFeed].map((item) => item.seq));
    this.beginOlder();
    let added = 0;
    for (const event of events) {
      const seq = Number(event.seq);
      if (seq >= this.olderRead) continue; // shown above, or already read
      this.olderRead = seq;
      const item = shown.has(seq) ? undefined : this.historyItem(event);
      if (item) {
        this.olderFeed.push(item);
        added += 1;
      }
    }
    this.olderFeed.sort((a, b) => b.seq - a.seq);
    return added;
  }

  /** Whether a message shown may lack its start, which deltas read back could give it. */
  get textsStartUnseen(): boolean {
    return this.texts.some((t) => t.startUnseen && !t.cut);
  }

  /**
   * Text deltas from before the replayed events (ListEvents, newest first), put in front of
   * the messages they belong to whose start the page lacks. `reachedStart`: the reads came
   * to the run's first event, so each of those messages now starts where it began.
   */
  addTextHistory(events: RunEvent[], reachedStart: boolean): void {
    for (const event of events) {
      const p = event.payload;
      if (p.case !== "textDelta") continue;
      const entry = this.textById.get(p.value.messageId);
      const seq = Number(event.seq);
      if (!entry || !entry.startUnseen || entry.cut || seq >= entry.firstSeq) continue;
      setText(entry, p.value.delta + entry.text);
      entry.firstSeq = seq;
    }
    if (reachedStart) for (const t of this.texts) t.startUnseen = false;
  }

  /** Run-level metric units and changes: the snapshot's, overlaid by later updates. */
  metricUnit(name: string): string {
    return this.unitOverlay.get(name) ?? this.snapshot?.metricUnits[name] ?? "";
  }

  metricChange(name: string): number | undefined {
    const snapshotSeq = this.snapshot ? Number(this.snapshot.lastSeq) : 0;
    const overlay = this.changeOverlay.get(name);
    if (overlay && overlay.seq > snapshotSeq) return overlay.value;
    return this.snapshot?.metricChanges[name];
  }

  /** Applies events in seq order; returns true when the snapshot should be refreshed. */
  applyEvents(events: RunEvent[]): boolean {
    let stale = false;
    for (const event of events) {
      this.lastSeq = Number(event.seq);
      const kind = kindOf(event);
      if (kind === undefined) continue; // a newer kind: skip it, the cursor still moves
      if (SNAPSHOT_KINDS.has(kind)) stale = true;
      if (STEP_CASES.has(event.payload.case ?? "") && this.snapshot && event.seq > this.snapshot.lastSeq) {
        // The step list moves with the events; the next snapshot confirms it.
        this.stepEvents.push(event);
        patchSteps(this.snapshot, event);
      }
      this.apply(event);
      if (FEED_KIND_SET.has(kind)) this.feed.push(describe(event, kind, this));
    }
    this.trimFeed();
    return stale;
  }

  /** Milestones and serious alerts that arrived live (not replayed history), once each. */
  takeToasts(): Toast[] {
    const toasts = this.pendingToasts;
    this.pendingToasts = [];
    return toasts;
  }

  /** Run-level metrics: the snapshot's, overlaid by updates that arrived after it. */
  metrics(): Map<string, number> {
    const values = new Map<string, number>();
    const snapshotSeq = this.snapshot ? Number(this.snapshot.lastSeq) : 0;
    for (const [name, value] of Object.entries(this.snapshot?.metrics ?? {})) values.set(name, value);
    for (const [name, { value, seq }] of this.metricOverlay) {
      if (seq > snapshotSeq || !values.has(name)) values.set(name, value);
    }
    return values;
  }

  openDecisions(): DecisionItem[] {
    return [...this.decisions.values()].filter((d) => d.open || d.submitting !== undefined);
  }

  /** The phase a workflow state change sets: its stages, or the last ones listed. */
  private setPhase(seq: number, current: string, stages: string[]): void {
    this.phase = { current, stages: stages.length ? [...stages] : (this.phase?.stages ?? []) };
    this.phaseSeq = seq;
    if (stages.length) this.phaseStagesSeq = seq;
  }

  /** A change's pipeline flags, unless it gave none or a newer change's are shown. */
  private setPipeline(seq: number, flags: Record<string, boolean>): void {
    if (Object.keys(flags).length > 0 && seq > (this.pipeline?.seq ?? 0)) this.pipeline = { seq, flags: { ...flags } };
  }

  /**
   * Takes an allocation, live or read back (in any order): the newest becomes the agent's
   * model; the newest with reasoning stays its reasoning while later ones give none.
   */
  private allocate(seq: number, allocation: ModelAllocation): void {
    let item = this.allocations.get(allocation.agentId);
    if (!item) {
      item = { seq, allocation };
      this.allocations.set(allocation.agentId, item);
    } else if (item.seq < seq) {
      item.seq = seq;
      item.allocation = allocation;
    }
    if (allocation.reasoning && (!item.reasoned || item.reasoned.seq < seq)) item.reasoned = { seq, allocation };
  }

  /** The agents the models panel lists: those allocated last, newest first. */
  shownAllocations(): AllocationItem[] {
    return [...this.allocations.values()].sort((a, b) => b.seq - a.seq).slice(0, MODELS_SHOWN);
  }

  /**
   * Whether an agent the models panel lists has no reasoning yet, which an earlier
   * allocation read back may give (its newest came from an integration, say).
   */
  get allocationsUnexplained(): boolean {
    return this.shownAllocations().some((item) => item.reasoned === undefined);
  }

  /** Whether the phase lists stages an event gave (not none for want of an earlier change). */
  get phaseHasStages(): boolean {
    return this.phaseStagesSeq > 0;
  }

  private live(seq: number): boolean {
    return this.historySeq >= 0 && seq > this.historySeq;
  }

  private apply(event: RunEvent): void {
    const seq = Number(event.seq);
    const time = millis(event.eventTime);
    const p = event.payload;
    switch (p.case) {
      case "runCreated":
        for (const step of p.value.steps) this.stepNames.set(step.stepId, step.name || step.stepId);
        break;
      case "stepStarted":
        if (p.value.name && !this.stepNames.has(p.value.stepId)) this.stepNames.set(p.value.stepId, p.value.name);
        break;
      case "runCompleted":
        this.status = RunStatus.SUCCEEDED;
        break;
      case "runFailed":
        this.status = RunStatus.FAILED;
        break;
      case "runCancelled":
        this.status = RunStatus.CANCELLED;
        break;
      case "runStatusChanged":
        this.status = p.value.status;
        break;
      case "runStarted":
        if (this.status === RunStatus.PENDING || this.status === RunStatus.UNSPECIFIED) this.status = RunStatus.RUNNING;
        break;
      case "textDelta": {
        const d = p.value;
        let entry = this.textById.get(d.messageId);
        if (!entry) {
          const startUnseen = this.startSeq > 0 && !this.live(seq); // begun before the replayed events?
          entry = { messageId: d.messageId, agentId: d.agentId, stepId: d.stepId, text: "", final: false, firstSeq: seq, startUnseen, cut: false };
          this.textById.set(d.messageId, entry);
          this.texts.push(entry);
          const writing = this.texts.filter((t) => !t.final).length;
          this.writtenTogether = writing === 1 ? 1 : Math.max(this.writtenTogether, writing);
          if (this.texts.length > TEXTS_KEPT) {
            // Drop a finished message first: one still being written keeps its text.
            const index = Math.max(0, this.texts.findIndex((t) => t.final));
            const [dropped] = this.texts.splice(index, 1);
            if (dropped) this.textById.delete(dropped.messageId);
          }
        }
        setText(entry, entry.text + d.delta);
        entry.final = entry.final || d.final;
        break;
      }
      case "thinking":
        this.thoughts.push({ seq, time, thinking: p.value });
        if (this.thoughts.length > THOUGHTS_KEPT) this.thoughts.shift();
        break;
      case "modelAllocation":
        this.allocate(seq, p.value);
        break;
      case "metricsUpdate":
        if (!p.value.stepId) {
          for (const [name, value] of Object.entries(p.value.values)) {
            this.metricOverlay.set(name, { value, seq });
            this.changeOverlay.set(name, { value: p.value.changes[name], seq });
          }
          for (const [name, unit] of Object.entries(p.value.units)) this.unitOverlay.set(name, unit);
        }
        break;
      case "workflowStateChange":
        if (p.value.stages.length > 0 || p.value.currentStage) this.setPhase(seq, p.value.currentStage, p.value.stages);
        this.setPipeline(seq, p.value.pipelineStatus);
        break;
      case "decisionRequested": {
        const d = p.value;
        this.decisions.set(d.decisionId, decisionItem({ ...d, requestedSeq: event.seq }));
        if (this.live(seq)) this.pendingToasts.push({ seq, decisionId: d.decisionId, title: "Input needed", detail: d.prompt, tone: "warning" });
        break;
      }
      case "decisionResolved": {
        const item = this.decisions.get(p.value.decisionId);
        if (item) {
          item.open = false;
          item.submitting = undefined;
          item.error = undefined; // an answer that seemed to fail may have arrived after all
          item.outcome = p.value.outcome;
          item.choice = p.value.choice;
          item.answeredBy = p.value.answeredBy;
        }
        break;
      }
      case "milestone":
        if (this.live(seq)) {
          this.pendingToasts.push({ seq, title: p.value.title, detail: p.value.description, tone: "success" });
        }
        break;
      case "alert":
        if (this.live(seq) && p.value.severity >= Severity.HIGH) {
          this.pendingToasts.push({ seq, title: "Alert", detail: p.value.message, tone: "danger" });
        }
        break;
      default:
        break;
    }
  }
}

/** Sets a message's text, keeping its last TEXT_CHARS characters. */
function setText(entry: StreamedText, text: string): void {
  entry.cut = entry.cut || text.length > TEXT_CHARS;
  entry.text = text.slice(-TEXT_CHARS);
}

function decisionItem(
  d: Pick<Decision, "decisionId" | "prompt" | "decisionType" | "options" | "canSkip" | "defaultOption" | "deadline" | "context" | "requestedSeq">,
): DecisionItem {
  return {
    decisionId: d.decisionId,
    prompt: d.prompt,
    decisionType: d.decisionType,
    options: d.options,
    canSkip: d.canSkip,
    defaultOption: d.defaultOption,
    deadline: millis(d.deadline),
    context: d.context,
    requestedSeq: Number(d.requestedSeq),
    open: true,
    outcome: DecisionOutcome.UNSPECIFIED,
    choice: "",
    answeredBy: "",
    submitting: undefined,
    error: undefined,
    refusal: undefined,
  };
}

const STEP_CASES = new Set(["stepStarted", "stepProgress", "stepCompleted", "stepFailed", "stepSkipped"]);

/** A snapshot's steps by id, and the two sums its progress is made of, kept as steps move. */
interface StepTally {
  byId: Map<string, Step>;
  /** Steps done (succeeded or skipped). */
  done: number;
  /** The running steps' own progress, in steps (two halfway steps are one). */
  running: number;
}

/** Each snapshot's tally, made on its first step event: an event then costs the same
 * whatever the number of steps. */
const tallies = new WeakMap<Run, StepTally>();

function tallyOf(run: Run): StepTally {
  let tally = tallies.get(run);
  if (!tally) {
    tally = { byId: new Map(), done: 0, running: 0 };
    for (const step of run.steps) {
      tally.byId.set(step.stepId, step);
      count(tally, step, 1);
    }
    tallies.set(run, tally);
  }
  return tally;
}

/** Adds (sign 1) or takes away (sign -1) what a step counts for in its run's progress. */
function count(tally: StepTally, step: Step, sign: 1 | -1): void {
  if (step.status === StepStatus.SUCCEEDED || step.status === StepStatus.SKIPPED) tally.done += sign;
  else if (step.status === StepStatus.RUNNING) tally.running += (sign * step.percent) / 100;
}

/**
 * Applies a step event to a snapshot's steps and progress the way the server derives them
 * (a step's percent counts towards the run's; a step started beyond the plan is added), so
 * the page does not wait for the next GetRun to move. The server's next snapshot replaces
 * all of it.
 */
function patchSteps(run: Run, event: RunEvent): void {
  const p = event.payload;
  if (p.case === undefined || !STEP_CASES.has(p.case)) return;
  const tally = tallyOf(run);
  const stepId = (p.value as { stepId: string }).stepId;
  let step = tally.byId.get(stepId);
  if (!step && p.case === "stepStarted") {
    const { name, description, agent } = p.value;
    step = create(StepSchema, { stepId, name: name || stepId, description, agent, status: StepStatus.PENDING });
    run.steps.push(step);
    tally.byId.set(stepId, step);
  }
  if (!step) return; // an event the server would have refused
  count(tally, step, -1);
  switch (p.case) {
    case "stepStarted":
      step.status = StepStatus.RUNNING;
      step.startTime = event.eventTime;
      step.endTime = undefined;
      step.duration = undefined;
      step.error = undefined;
      step.percent = 0;
      if (p.value.agent) step.agent = p.value.agent;
      break;
    case "stepProgress":
      if (step.status === StepStatus.PENDING) {
        step.status = StepStatus.RUNNING;
        step.startTime = event.eventTime;
      }
      step.percent = p.value.percent;
      step.subStep = p.value.subStep;
      step.detail = p.value.detail;
      if (p.value.subStepDetails) step.subStepDetails = p.value.subStepDetails;
      break;
    case "stepCompleted":
      step.status = StepStatus.SUCCEEDED;
      step.endTime = event.eventTime;
      step.duration = p.value.duration;
      step.percent = 100;
      step.summary = p.value.summary;
      break;
    case "stepFailed":
      step.status = StepStatus.FAILED;
      step.endTime = event.eventTime;
      step.error = p.value.error;
      break;
    case "stepSkipped":
      step.status = StepStatus.SKIPPED;
      step.endTime = event.eventTime;
      step.skipReason = p.value.reason;
      break;
  }
  count(tally, step, 1);
  if (run.progress && run.steps.length > 0) {
    run.progress.completedSteps = tally.done;
    run.progress.totalSteps = run.steps.length;
    // A run without a plan: its steps say what was done, not how much is left.
    if (!run.progress.unplanned) {
      run.progress.percent = Math.min(100, ((tally.done + tally.running) / run.steps.length) * 100);
    }
  }
}

function struct(obj: JsonObject | undefined): string {
  if (!obj) return "";
  return jsonText(Object.fromEntries(Object.entries(obj).slice(0, 4)));
}

function dur(d: Duration | undefined): string {
  const ms = durationMillis(d);
  return ms === undefined ? "" : formatDuration(ms);
}

/**
 * What a closed decision's card and feed entry are titled: "Decision made" when someone
 * answered or skipped it, never when nobody did (the deadline took the default, or closed it).
 */
export function decisionClosedTitle(outcome: DecisionOutcome): string {
  switch (outcome) {
    case DecisionOutcome.DEFAULTED:
    case DecisionOutcome.TIMED_OUT:
      return "No answer in time";
    case DecisionOutcome.CANCELLED:
      return "Decision cancelled";
    default:
      return "Decision made";
  }
}

function optionLabel(options: DecisionOption[], value: string): string {
  const option = options.find((o) => o.value === value);
  return option?.label || value;
}

/** What describe() may look up: step names and the decisions asked so far. */
export interface FeedContext {
  readonly stepNames: ReadonlyMap<string, string>;
  readonly decisions: ReadonlyMap<string, DecisionItem>;
}

/** The feed line for an event of a feed kind (FEED_KINDS): every one has a line. */
export function describe(event: RunEvent, kind: EventKind, context: FeedContext): FeedItem {
  const base = { seq: Number(event.seq), kind, time: millis(event.eventTime as Timestamp | undefined) };
  const step = (id: string) => context.stepNames.get(id) ?? id;
  const p = event.payload;
  switch (p.case) {
    case "runCreated":
      return { ...base, icon: "layers", tone: "neutral", title: "Run created", detail: `${p.value.steps.length} ${p.value.steps.length === 1 ? "step" : "steps"} planned`, who: p.value.workflow };
    case "runStarted":
      return { ...base, icon: "play", tone: "info", title: "Run started", detail: p.value.message, who: "" };
    case "runStatusChanged":
      return { ...base, icon: "dot", tone: "info", title: `Run ${enumWords(RunStatus[p.value.status]).toLowerCase()}`, detail: p.value.reason, who: "" };
    case "runCompleted":
      return { ...base, icon: "check", tone: "success", title: "Run succeeded", detail: p.value.summary, who: "" };
    case "runFailed":
      return { ...base, icon: "x", tone: "danger", title: "Run failed", detail: p.value.error?.message ?? "", who: "" };
    case "runCancelled":
      return { ...base, icon: "x", tone: "warning", title: "Run cancelled", detail: p.value.reason, who: p.value.cancelledBy };
    case "stepStarted":
      return { ...base, icon: "play", tone: "info", title: `${step(p.value.stepId)} started`, detail: "", who: p.value.agent };
    case "stepCompleted":
      return { ...base, icon: "check", tone: "success", title: `${step(p.value.stepId)} completed`, detail: [p.value.summary, dur(p.value.duration)].filter(Boolean).join(" · "), who: "" };
    case "stepFailed":
      return { ...base, icon: "x", tone: "danger", title: `${step(p.value.stepId)} failed`, detail: p.value.error?.message ?? "", who: "" };
    case "stepSkipped":
      return { ...base, icon: "skip", tone: "neutral", title: `${step(p.value.stepId)} skipped`, detail: p.value.reason, who: "" };
    case "agentActivity": {
      const a = p.value;
      const tone: Tone =
        a.activity === AgentActivityType.COMPLETED ? "success" : a.activity === AgentActivityType.FAILED ? "danger" : a.activity === AgentActivityType.STARTED ? "accent" : "neutral";
      const verb = a.activity === AgentActivityType.STARTED ? "started" : a.activity === AgentActivityType.COMPLETED ? "finished" : a.activity === AgentActivityType.FAILED ? "failed" : "working";
      return { ...base, icon: "user", tone, title: `${a.agentName || a.agentId} ${verb}`, detail: a.message || struct(a.data), who: a.stepId ? step(a.stepId) : a.agentType };
    }
    case "milestone":
      return { ...base, icon: "trophy", tone: "success", title: p.value.title, detail: p.value.description, who: "" };
    case "alert": {
      const action = p.value.action ? ALERT_ACTIONS[p.value.action.type] : undefined;
      return {
        ...base,
        icon: "alert",
        tone: p.value.severity >= Severity.HIGH ? "danger" : "warning",
        title: p.value.message,
        detail: p.value.suggestedAction ? `Suggested: ${p.value.suggestedAction}` : "",
        who: [enumWords(Severity[p.value.severity]), p.value.stepId ? step(p.value.stepId) : ""].filter(Boolean).join(" · "),
        action: action ? { action, label: p.value.action?.label || p.value.suggestedAction || enumWords(AlertActionType[p.value.action?.type ?? 0]) } : undefined,
      };
    }
    case "errorRecovery":
      return {
        ...base,
        icon: "bolt",
        tone: p.value.canContinue ? "warning" : "danger",
        title: p.value.errorMessage,
        detail: [p.value.recoveryStrategy.replace(/_/g, " "), p.value.attempt > 1 ? `attempt ${p.value.attempt}` : ""].filter(Boolean).join(" · "),
        who: [p.value.stepId ? step(p.value.stepId) : "", p.value.affectedAgents.join(", ")].filter(Boolean).join(" · "),
      };
    case "artifactProduced": {
      const a = p.value.artifact;
      return { ...base, icon: "file", tone: "neutral", title: `Artifact: ${a?.name ?? ""}`, detail: a?.kind ?? "", who: a?.stepId ? step(a.stepId) : "" };
    }
    case "workflowStateChange":
      return { ...base, icon: "layers", tone: "accent", title: p.value.currentStage ? `Phase: ${p.value.currentStage}` : enumWords(p.value.changeType.toUpperCase()), detail: enumWords(p.value.changeType.toUpperCase()), who: "" };
    case "healthChanged":
      return { ...base, icon: "heart", tone: "warning", title: `Health: ${enumWords(RunHealth[p.value.health]).toLowerCase()}`, detail: p.value.reason, who: "" };
    case "decisionRequested":
      return { ...base, icon: "question", tone: "warning", title: "Input needed", detail: p.value.prompt, who: p.value.decisionType };
    case "decisionResolved": {
      const options = context.decisions.get(p.value.decisionId)?.options ?? [];
      const { outcome } = p.value;
      const label = optionLabel(options, p.value.choice);
      const how = outcome === DecisionOutcome.ANSWERED ? `Answered: ${label}` : outcome === DecisionOutcome.DEFAULTED ? `Went with the default: ${label}` : enumWords(DecisionOutcome[outcome]);
      const unanswered = outcome === DecisionOutcome.DEFAULTED || outcome === DecisionOutcome.TIMED_OUT;
      return { ...base, icon: unanswered ? "clock" : "check", tone: unanswered ? "warning" : "success", title: decisionClosedTitle(outcome), detail: how, who: p.value.answeredBy };
    }
    case "custom":
      return { ...base, icon: "spark", tone: "neutral", title: p.value.type, detail: struct(p.value.data), who: "" };
    default: {
      // A kind with no case here: its name, and the fields its producer set.
      const payload = p.case === undefined ? undefined : PAYLOAD_BY_CASE.get(p.case);
      const detail = payload && p.value ? fieldsText(payload, p.value) : "";
      return { ...base, icon: "dot", tone: "neutral", title: enumWords(EventKind[kind]), detail, who: "" };
    }
  }
}

export function isTerminal(status: RunStatus): boolean {
  return status === RunStatus.SUCCEEDED || status === RunStatus.FAILED || status === RunStatus.CANCELLED;
}
