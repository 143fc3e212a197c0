// One open run: its watcher, its model, snapshot refreshes and answering its decisions.
import { Code, ConnectError } from "@connectrpc/connect";
import { DecisionOutcome, EventKind, type RunEvent } from "../gen/runstream/v1/event_pb";
import type { Run } from "../gen/runstream/v1/run_pb";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import type { Api } from "./api";
import { serverNow } from "./clock";
import { type DecisionItem, FEED_KINDS, FEED_LIMIT, MODELS_SHOWN, RunModel, THOUGHTS_KEPT, type RunAction, isTerminal } from "./model";
import { type LinkState, RunWatch } from "./watch";
import { actingAs } from "./who";

/**
 * The least time between two GetRun calls of an open run, however fast events arrive: a
 * quarter of a second, and as many more quarters as the run has hundreds of steps (every
 * answer carries every step: 220 KB at 1,600), up to 5 s. Step events move the step list
 * and the progress meanwhile.
 */
const REFRESH_INTERVAL_MS = 250;
const STEPS_PER_INTERVAL = 100;
const MAX_REFRESH_INTERVAL_MS = 5000;

function refreshInterval(steps: number): number {
  return Math.min(MAX_REFRESH_INTERVAL_MS, REFRESH_INTERVAL_MS * Math.max(1, Math.ceil(steps / STEPS_PER_INTERVAL)));
}

/** Feed entries one "Load earlier activity" adds (fewer at the run's start). */
const OLDER_PAGE = 250;
/** The page size of the panels' backward reads: the replayed events' kinds come first. */
const PANEL_PAGE = 100;
/**
 * How far back a long run's page reads the start of the messages its replayed events began
 * inside: at most this many pages of TEXT_PAGE deltas.
 */
const TEXT_PAGES = 2;
const TEXT_PAGE = 1000;
/** ListEvents order_by for the newest events first. */
const NEWEST_FIRST = "seq desc";

/** A ListEvents filter for these kinds, of the events below seq `before` (OR binds tighter
 * than AND, as in AIP-160). */
function eventsBefore(before: number, kinds: readonly EventKind[]): string {
  const terms = [`seq < ${before}`];
  if (kinds.length) terms.push(kinds.map((kind) => `kind = ${EventKind[kind]}`).join(" OR "));
  return terms.join(" AND ");
}

/**
 * What a failed call says on the page. The path to the server failing (Envoy's own "upstream
 * connect error or disconnect/reset before headers ..." as UNAVAILABLE, a lost network, a
 * server error) reads as a plain sentence; `denied` stands for PERMISSION_DENIED; the server's
 * other refusals are written for people and shown as they are.
 */
export function plainError(err: ConnectError, denied: string): string {
  switch (err.code) {
    case Code.Unavailable:
    case Code.Unknown:
    case Code.DeadlineExceeded:
    case Code.Canceled:
      return "Could not reach the server; try again";
    case Code.Internal:
      return "The server failed to take it; try again";
    case Code.PermissionDenied:
      return `${denied} (the operator role is needed)`;
    default:
      return err.rawMessage;
  }
}

/**
 * Why an answer was not taken, said as the page says it (found in review: a run that had
 * ended showed the server's "run '94b1c4a1…' already ended (CANCELLED); decision 'q' was
 * CANCELLED"): closed already (ABORTED), the run ended (FAILED_PRECONDITION, RUN_ENDED), or
 * the server's words for another precondition (retention removed the run's decisions).
 */
function notTaken(err: ConnectError): string {
  if (err.code === Code.Aborted) return "Your answer was not taken: the decision was already closed.";
  if (err.findDetails(ErrorInfoSchema).some((info) => info.reason === "RUN_ENDED")) return "Your answer was not taken: the run had ended.";
  return `Your answer was not taken: ${err.rawMessage}`;
}

export class RunSession {
  readonly model: RunModel;
  link: LinkState = "connecting";
  linkDetail = "";
  error = "";
  /** When the link was lost (on the server's clock, serverNow()), while it is; the ETA stands still meanwhile. */
  lostAt: number | undefined;
  /** The pause, resume or cancel request on its way, and the last one's error. */
  acting: RunAction | undefined;
  actionError = "";
  /**
   * Older activity: "idle" (more to load), "loading", "start" (loaded back to the run's first
   * event), "purged" (loaded back to where retention removed the rest) or "failed".
   */
  older: "idle" | "loading" | "start" | "purged" | "failed" = "idle";
  /** Why the last load of older activity failed. */
  olderError = "";
  /** The ListEvents page token of the next older page; "" before the first. */
  private olderToken = "";
  /** The filter of the listing olderToken continues (a token is bound to its filter). */
  private olderFilter = "";
  /** A long run's page is replaying its newest events: what needs them all waits for them. */
  private replaying = false;
  private readonly watch: RunWatch;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing = false;
  private refreshAgain = false;
  private lastRefresh = 0;
  private stopped = false;

  constructor(
    private readonly api: Api,
    readonly runId: string,
    private readonly changed: () => void,
    private readonly snapshotSeen: (run: Run) => void,
  ) {
    this.model = new RunModel(runId);
    this.watch = new RunWatch(api, runId, {
      events: (events) => {
        if (this.model.applyEvents(events)) this.scheduleRefresh();
        if (this.replaying && this.model.lastSeq >= this.model.historySeq) {
          this.replaying = false;
          void this.fillFeed();
          void this.readTextStarts();
        }
        this.changed();
      },
      snapshot: (response) => {
        if (this.model.applySnapshot(response) && response.run) this.snapshotSeen(response.run);
        this.changed();
      },
      seed: (response, from) => {
        this.model.seedFromSnapshot(response, from);
        this.replaying = true;
        if (response.run) this.snapshotSeen(response.run);
        this.changed();
        void this.loadPanels(from);
      },
      state: (state, detail) => {
        const lost = state === "reconnecting" || state === "signin" || state === "denied";
        if (lost && this.lostAt === undefined) this.lostAt = serverNow();
        if (!lost && state !== "connecting") this.lostAt = undefined;
        this.link = state;
        this.linkDetail = detail ?? "";
        if (state === "failed") this.error = detail ?? "failed";
        // The last events may have landed between the last refresh and the stream's end.
        if (state === "ended") this.scheduleRefresh();
        this.changed();
      },
    });
  }

  start(): void {
    this.watch.start();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    this.watch.stop();
  }

  /**
   * The page's token was replaced: the watch opens again with the new one, and what the old
   * one was refused (an answer, a pause) is no longer said: the new one may do it.
   */
  tokenChanged(): void {
    this.watch.tokenChanged();
    for (const item of this.model.decisions.values()) if (item.open) item.error = undefined;
    this.actionError = "";
    this.changed();
  }

  /** Answers (or skips, with choice undefined) a decision with SubmitDecision. */
  async answer(decisionId: string, choice: string | undefined): Promise<void> {
    const item = this.model.decisions.get(decisionId);
    if (!item || !item.open || item.submitting !== undefined) return;
    item.submitting = choice ?? "";
    item.error = undefined;
    item.refusal = undefined;
    this.changed();
    try {
      const response = await this.api.decisions.submitDecision({
        runId: this.runId,
        decisionId,
        choice: choice ?? "",
        skip: choice === undefined,
        answeredBy: actingAs(),
      });
      const decision = response.decision;
      if (decision) {
        item.outcome = decision.outcome;
        item.choice = decision.choice;
        item.answeredBy = decision.answeredBy;
      }
      // The DecisionResolved event closes it for good; this only stops the spinner early.
      item.open = false;
    } catch (error) {
      const err = ConnectError.from(error);
      if (err.code === Code.Aborted || err.code === Code.FailedPrecondition) {
        // Closed before this answer came (answered by someone else, timed out, the run
        // ended): said beside the outcome that won, whether the page heard of it first (as
        // a second viewer clicking at once usually does) or not yet, when what it was
        // closed with is read back.
        item.open = false;
        item.refusal = notTaken(err);
        if (item.outcome === DecisionOutcome.UNSPECIFIED) await this.readOutcome(item);
      } else if (item.open) item.error = plainError(err, "This token may not answer decisions");
      // Not open any more otherwise: its DecisionResolved came on the watch stream first, as
      // when the answer was stored and the proxy lost the reply; the outcome shows alone.
    } finally {
      item.submitting = undefined;
      this.changed();
    }
  }

  /**
   * A closed decision's outcome, choice and who answered, from GetDecision, unless its
   * DecisionResolved came meanwhile. Quiet on failure: the outcome then shows once that
   * event comes.
   */
  private async readOutcome(item: DecisionItem): Promise<void> {
    try {
      const { decision } = await this.api.decisions.getDecision({ runId: this.runId, decisionId: item.decisionId });
      if (!decision || item.outcome !== DecisionOutcome.UNSPECIFIED) return;
      item.outcome = decision.outcome;
      item.choice = decision.choice;
      item.answeredBy = decision.answeredBy;
    } catch {
      // The card says it is closed, and the error why this answer was not taken.
    }
  }

  /** Pauses, resumes or cancels the run (RunService), as the name the user gave (./who). */
  async control(action: RunAction): Promise<void> {
    if (this.acting) return;
    this.acting = action;
    this.actionError = "";
    this.changed();
    try {
      const runId = this.runId;
      const by = actingAs();
      if (action === "pause") await this.api.runs.pauseRun({ runId, requestedBy: by });
      else if (action === "resume") await this.api.runs.resumeRun({ runId, requestedBy: by });
      else await this.api.runs.cancelRun({ runId, cancelledBy: by, reason: "cancelled from the dashboard" });
      this.scheduleRefresh();
    } catch (error) {
      this.actionError = plainError(ConnectError.from(error), "This token may not pause, resume or cancel runs");
    } finally {
      this.acting = undefined;
      this.changed();
    }
  }

  /**
   * A long run's thinking, model allocations and phases from before the replayed events
   * (up to `until`), read newest first (ListEvents "seq desc"), each kind only as far back as
   * its panel looks, and the panels show what a page open all along would: none of them
   * totals the whole log. The thinking panel keeps the newest THOUGHTS_KEPT thoughts; the
   * models panel lists the MODELS_SHOWN agents allocated last, each with the reasoning of
   * its newest allocation that gave one; the phases are the newest change's current stage
   * with the newest list of stages. Only a kind whose panel never fills (fewer agents than
   * the panel lists, or one never given reasoning; no change listing stages) is read back to
   * the run's start. A failure leaves the panels as they are.
   */
  private async loadPanels(until: number): Promise<void> {
    const { model } = this;
    // Each read stops once the panel is full: the newest thoughts, or as many agents as the
    // panel lists (an agent not met by then was allocated before all of them).
    const enoughThoughts = () => model.thoughts.length >= THOUGHTS_KEPT;
    // An agent listed without reasoning reads on for an earlier allocation that gave some:
    // allocations are few (an integration reports each model an agent calls once).
    const enoughAgents = () => model.allocations.size >= MODELS_SHOWN && !model.allocationsUnexplained;
    // The newest change that lists the stages is the oldest one the phases need; the
    // pipeline's flags may come from an older one (a run that gives none reads them all).
    const enoughPhases = () => model.phaseHasStages && model.pipeline !== undefined;
    const reads = [
      { kind: EventKind.THINKING, enough: enoughThoughts },
      { kind: EventKind.MODEL_ALLOCATION, enough: enoughAgents },
      { kind: EventKind.WORKFLOW_STATE_CHANGE, enough: enoughPhases },
    ];
    await Promise.all(
      reads
        .filter((read) => !read.enough())
        .map((read) =>
          this.readBack(read.kind, until, (events) => {
            model.addPanelHistory(events);
            return read.enough();
          }),
        ),
    );
  }

  /**
   * Reads events of one kind newest first, page by page (`pageSize` a page), handing those
   * up to `until` to `take` until it says it has enough or the log's start is reached (`last`
   * says so: the page is the listing's last). Quiet on failure.
   */
  private async readBack(
    kind: EventKind,
    until: number,
    take: (events: RunEvent[], last: boolean) => boolean,
    pageSize = PANEL_PAGE,
  ): Promise<void> {
    try {
      let pageToken = "";
      const filter = eventsBefore(until + 1, [kind]);
      for (;;) {
        const page = await this.api.runs.listEvents({ runId: this.runId, filter, orderBy: NEWEST_FIRST, pageSize, pageToken });
        if (this.stopped) return;
        pageToken = page.nextPageToken;
        const enough = take(page.events, !pageToken);
        this.changed();
        if (enough || !pageToken) return;
      }
    } catch {
      // The panels keep what the replayed events gave them.
    }
  }

  /**
   * The start of the messages a long run's replayed events began inside: their deltas from
   * before those events, read newest first. ListEvents cannot pick one message's deltas and
   * nothing marks a message's first, so this reads every message's, bounded however long the
   * log: TEXT_PAGES calls at most, fewer once each such message holds TEXT_CHARS (more would
   * be cut) or the run's start is reached. A message whose start it did not reach says where
   * its text begins ("from #N on"); once it reached the run's start, each shows whole.
   */
  private async readTextStarts(): Promise<void> {
    if (!this.model.textsStartUnseen) return;
    let pages = 0;
    await this.readBack(
      EventKind.TEXT_DELTA,
      this.model.startSeq,
      (events, last) => {
        pages += 1;
        this.model.addTextHistory(events, last && Number(this.model.snapshot?.purgedSeq ?? 0) === 0);
        return pages >= TEXT_PAGES || !this.model.textsStartUnseen;
      },
      TEXT_PAGE,
    );
  }

  /**
   * Where the older activity ends, once the page knows: at the run's start, or where the
   * retention policy removed the rest (told by the last page, or by the snapshot before a
   * click: the events not shown are all gone), or at the run's first event shown.
   */
  get olderEnd(): "start" | "purged" | undefined {
    if (this.older === "start" || this.older === "purged") return this.older;
    if (this.older === "loading") return undefined;
    const purgedSeq = Number(this.model.snapshot?.purgedSeq ?? 0);
    if (purgedSeq > 0 && purgedSeq >= this.model.olderBefore - 1) return "purged";
    return this.model.olderBefore <= 1 ? "start" : undefined;
  }

  /**
   * Fills a long run's feed to FEED_LIMIT entries once its replayed events are in, when they
   * gave fewer (a run streaming text has few entries in its last 200 events): the newest
   * entries before the oldest one shown, one ListEvents call newest first, so the feed shows
   * what a page open all along shows. Loading earlier activity waits for it; a failure
   * leaves the rest to that button.
   */
  private async fillFeed(): Promise<void> {
    const wanted = FEED_LIMIT - this.model.feed.length;
    if (wanted <= 0 || this.older !== "idle" || this.olderEnd !== undefined) return;
    this.older = "loading";
    this.changed();
    try {
      const filter = eventsBefore(this.model.olderBefore, FEED_KINDS);
      const page = await this.api.runs.listEvents({ runId: this.runId, filter, orderBy: NEWEST_FIRST, pageSize: wanted });
      if (this.stopped) return;
      this.model.addFeedHistory(page.events);
    } catch {
      // "Load earlier activity" offers them.
    }
    this.older = "idle";
    this.changed();
  }

  /**
   * Loads the activity right before what the feed shows of a long run, OLDER_PAGE entries or
   * a few more a call, each call further back, until the run's start or the history the
   * retention policy removed: ListEvents newest first below the oldest entry shown (a
   * `seq <` filter, which the server reads from), later calls going on with the page token
   * of the same filter.
   */
  async loadOlder(): Promise<void> {
    if (this.older === "loading" || this.olderEnd !== undefined || this.model.startSeq === 0) return;
    this.older = "loading";
    this.olderError = "";
    this.changed();
    try {
      let added = 0;
      for (;;) {
        if (!this.olderToken) this.olderFilter = eventsBefore(this.model.beginOlder(), FEED_KINDS);
        const page = await this.api.runs.listEvents({
          runId: this.runId,
          filter: this.olderFilter,
          orderBy: NEWEST_FIRST,
          pageSize: OLDER_PAGE,
          pageToken: this.olderToken,
        });
        if (this.stopped) return;
        added += this.model.addOlder(page.events);
        this.changed();
        this.olderToken = page.nextPageToken;
        if (!this.olderToken) {
          // Newest first, a listing ends at the oldest event stored.
          this.older = Number(this.model.snapshot?.purgedSeq ?? 0) > 0 ? "purged" : "start";
          break;
        }
        if (added >= OLDER_PAGE) {
          this.older = "idle";
          break;
        }
      }
    } catch (error) {
      const err = ConnectError.from(error);
      if (err.code === Code.FailedPrecondition) {
        // The rest of the log was removed by retention since the last page.
        this.older = "purged";
      } else {
        this.older = "failed";
        // Reading needs the viewer role, not plainError's operator: say the server's reason.
        this.olderError = err.code === Code.PermissionDenied ? err.rawMessage : plainError(err, "");
      }
    }
    this.changed();
  }

  private scheduleRefresh(): void {
    if (this.stopped) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    if (this.refreshTimer !== undefined) return;
    const interval = refreshInterval(this.model.snapshot?.steps.length ?? 0);
    const wait = Math.max(0, this.lastRefresh + interval - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refresh();
    }, wait);
  }

  private async refresh(): Promise<void> {
    this.refreshing = true;
    this.lastRefresh = Date.now();
    try {
      const response = await this.api.runs.getRun({ runId: this.runId });
      if (this.model.applySnapshot(response) && response.run) this.snapshotSeen(response.run);
      this.changed();
    } catch {
      // The watcher reports connection trouble; a missed refresh is retried on the next event.
    } finally {
      this.refreshing = false;
      const again = this.refreshAgain || (isTerminal(this.model.status) && this.snapshotBehind());
      this.refreshAgain = false;
      if (again) this.scheduleRefresh();
    }
  }

  private snapshotBehind(): boolean {
    const snap = this.model.snapshot;
    return !snap || Number(snap.lastSeq) < this.model.lastSeq;
  }
}
