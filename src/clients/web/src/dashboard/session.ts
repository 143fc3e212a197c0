// One open run: its watcher, its model, snapshot refreshes and answering its decisions.
import { Code, ConnectError } from "@connectrpc/connect";
import { EventKind } from "../gen/runstream/v1/event_pb";
import type { Run } from "../gen/runstream/v1/run_pb";
import type { Api } from "./api";
import { FEED_KINDS, PANEL_KINDS, RunModel, type RunAction, isTerminal } from "./model";
import { type LinkState, RunWatch } from "./watch";

/** At most this many GetRun calls per second per open run, however fast events arrive. */
const REFRESH_INTERVAL_MS = 250;

/** Who the dashboard says answered a decision. */
export const ANSWERED_BY = "dashboard";

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

export class RunSession {
  readonly model: RunModel;
  link: LinkState = "connecting";
  linkDetail = "";
  error = "";
  /** When the link was lost (Date.now()), while it is; the ETA stands still meanwhile. */
  lostAt: number | undefined;
  /** The pause, resume or cancel request on its way, and the last one's error. */
  acting: RunAction | undefined;
  actionError = "";
  /** Older activity: "idle", "loading", "done" (all loaded) or "failed". */
  older: "idle" | "loading" | "done" | "failed" = "idle";
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
        this.changed();
      },
      snapshot: (response) => {
        if (this.model.applySnapshot(response) && response.run) this.snapshotSeen(response.run);
        this.changed();
      },
      seed: (response, from) => {
        this.model.seedFromSnapshot(response, from);
        if (response.run) this.snapshotSeen(response.run);
        this.changed();
        void this.loadPanels(from);
      },
      state: (state, detail) => {
        const lost = state === "reconnecting" || state === "denied";
        if (lost && this.lostAt === undefined) this.lostAt = Date.now();
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

  /** Answers (or skips, with choice undefined) a decision with SubmitDecision. */
  async answer(decisionId: string, choice: string | undefined): Promise<void> {
    const item = this.model.decisions.get(decisionId);
    if (!item || !item.open || item.submitting !== undefined) return;
    item.submitting = choice ?? "";
    item.error = undefined;
    this.changed();
    try {
      const response = await this.api.decisions.submitDecision({
        runId: this.runId,
        decisionId,
        choice: choice ?? "",
        skip: choice === undefined,
        answeredBy: ANSWERED_BY,
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
      // Closed meanwhile (its DecisionResolved came on the watch stream first, as when the
      // answer was stored and the proxy lost the reply): the outcome shows, no error beside it.
      if (!item.open) return;
      const err = ConnectError.from(error);
      item.error = err.code === Code.Aborted ? `Already decided: ${err.rawMessage}` : plainError(err, "This token may not answer decisions");
      if (err.code === Code.Aborted || err.code === Code.FailedPrecondition) item.open = false;
    } finally {
      item.submitting = undefined;
      this.changed();
    }
  }

  /** Pauses, resumes or cancels the run (RunService), as the dashboard's operator. */
  async control(action: RunAction): Promise<void> {
    if (this.acting) return;
    this.acting = action;
    this.actionError = "";
    this.changed();
    try {
      const runId = this.runId;
      if (action === "pause") await this.api.runs.pauseRun({ runId, requestedBy: ANSWERED_BY });
      else if (action === "resume") await this.api.runs.resumeRun({ runId, requestedBy: ANSWERED_BY });
      else await this.api.runs.cancelRun({ runId, cancelledBy: ANSWERED_BY, reason: "cancelled from the dashboard" });
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
   * (ListEvents, these kinds only, up to `until`): the panels show them as a page open all
   * along would. A failure leaves them as they are.
   */
  private async loadPanels(until: number): Promise<void> {
    const filter = PANEL_KINDS.map((kind) => `kind = ${EventKind[kind]}`).join(" OR ");
    try {
      let pageToken = "";
      for (;;) {
        const page = await this.api.runs.listEvents({ runId: this.runId, filter, pageSize: 1000, pageToken });
        const before = page.events.filter((event) => Number(event.seq) <= until);
        this.model.addPanelHistory(before);
        this.changed();
        pageToken = page.nextPageToken;
        if (!pageToken || before.length < page.events.length || this.stopped) break;
      }
    } catch {
      // The panels keep what the replayed events gave them.
    }
  }

  /** Loads the activity from before the page opened a long run (ListEvents, page by page). */
  async loadOlder(): Promise<void> {
    if (this.older === "loading" || this.model.startSeq === 0) return;
    this.older = "loading";
    this.changed();
    const filter = FEED_KINDS.map((kind) => `kind = ${EventKind[kind]}`).join(" OR ");
    try {
      let pageToken = "";
      for (;;) {
        const page = await this.api.runs.listEvents({ runId: this.runId, filter, pageSize: 1000, pageToken });
        const older = page.events.filter((event) => Number(event.seq) <= this.model.startSeq);
        this.model.addOlder(older);
        this.changed();
        pageToken = page.nextPageToken;
        if (!pageToken || older.length < page.events.length) break;
      }
      this.older = "done";
    } catch {
      this.older = "failed";
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
    const wait = Math.max(0, this.lastRefresh + REFRESH_INTERVAL_MS - Date.now());
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
