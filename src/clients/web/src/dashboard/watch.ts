// Following one run: WatchRun with exact resume. The watcher remembers the last seq it
// applied and, after any failure (Envoy restarted, network dropped, stream stalled), opens a
// new stream after that seq. Every event is handed on exactly once, in seq order.
import { Code, ConnectError } from "@connectrpc/connect";
import type { RunEvent } from "../gen/runstream/v1/event_pb";
import type { GetRunResponse } from "../gen/runstream/v1/run_service_pb";
import type { Api } from "./api";
import { askForToken, givenToken, refusedAnOlderToken } from "./auth";
import { heardServerTime } from "./clock";
import { retryDelay, sleep } from "./retry";

/**
 * The state of the link to the server, as the Live indicator shows it: "signin" while the
 * server wants a token the page does not have (the token dialog is up, nothing retries),
 * "denied" while the token may not view runs (the dialog asks for another).
 */
export type LinkState = "connecting" | "live" | "reconnecting" | "ended" | "failed" | "signin" | "denied";

export interface WatchHandlers {
  /** New events, in seq order, each exactly once. */
  events(events: RunEvent[]): void;
  /** A fresh snapshot, taken on every (re)connect before the stream opens. */
  snapshot(response: GetRunResponse): void;
  /**
   * The first snapshot of a long run, which the page starts from instead of replaying its
   * log: the stream then follows from the snapshot's seq.
   */
  seed(response: GetRunResponse, from: number): void;
  /** The link changed: `detail` says why when it failed or is retrying. */
  state(state: LinkState, detail?: string): void;
}

/** How often the server should send heartbeats; Envoy's idle timeouts are well above it. */
export const HEARTBEAT_SECONDS = 10;
/** A stream silent for this long is dead even if no error arrived (a half-open connection). */
const STALL_MS = HEARTBEAT_SECONDS * 2500;
/** A run with more events than this opens from its snapshot rather than from its whole log. */
export const LONG_RUN_EVENTS = 200;

export class RunWatch {
  private lastSeq = 0;
  private stopped = false;
  private controller: AbortController | undefined;
  /** The token the open connection was made with (undefined between connections). */
  private connectedWith: string | null | undefined;

  constructor(
    private readonly api: Api,
    readonly runId: string,
    private readonly handlers: WatchHandlers,
  ) {}

  /** The seq of the last event handed on. */
  get cursor(): number {
    return this.lastSeq;
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  /**
   * The page's token was replaced: a connection made with the old one is closed and made
   * again with the new one, after the last event handed on (none twice, none missed).
   */
  tokenChanged(): void {
    if (this.connectedWith !== undefined && this.connectedWith !== givenToken()) this.controller?.abort();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.handlers.state(failures === 0 ? "connecting" : "reconnecting", failures ? `attempt ${failures + 1}` : undefined);
      try {
        const ended = await this.follow(() => {
          failures = 0;
        });
        if (ended) {
          this.handlers.state("ended");
          return;
        }
      } catch (error) {
        if (this.stopped) return;
        if (this.connectedWith !== givenToken()) {
          // Made with a token replaced since (closed for it, or refused): call again with the
          // new one, whatever the old one got (another tenant's token finds no such run).
          failures = 0;
          continue;
        }
        const err = ConnectError.from(error);
        if (err.code === Code.NotFound || err.code === Code.OutOfRange || err.code === Code.InvalidArgument) {
          // Retrying cannot help: the run is unknown, or its log no longer matches the cursor.
          this.handlers.state("failed", err.rawMessage);
          return;
        }
        if (err.code === Code.FailedPrecondition) {
          // The run ended and retention removed its events: the snapshot taken is all there is.
          this.handlers.state("ended", err.rawMessage);
          return;
        }
        // Retrying cannot help either, but a token (another one) can: ask for it, then go on.
        if (await askedForToken(err, (state, detail) => this.handlers.state(state, detail))) {
          failures = 0;
          continue;
        }
        failures += 1;
        this.handlers.state("reconnecting", err.rawMessage || err.message);
        await sleep(retryDelay(err, failures));
      }
    }
  }

  /**
   * Puts every open decision of the run in `snapshot`: GetRun holds those its byte budget
   * has room for (about 512 KiB), and says how many it left out, which ListDecisions lists.
   * A long run's page knows its open decisions from the snapshot alone (its log is not
   * replayed from the start).
   */
  private async readEveryOpenDecision(snapshot: GetRunResponse, signal: AbortSignal): Promise<void> {
    if (snapshot.openDecisionsLeftOut === 0) return;
    const open = [];
    let pageToken = "";
    do {
      const page = await this.api.decisions.listDecisions({ runId: this.runId, filter: "state = OPEN", pageSize: 1000, pageToken }, { signal });
      open.push(...page.decisions);
      pageToken = page.nextPageToken;
    } while (pageToken);
    snapshot.openDecisions = open;
    snapshot.openDecisionsLeftOut = 0;
  }

  /**
   * One connection: a GetRun to refresh the snapshot (and to learn that the path to the
   * server works), then WatchRun after the cursor until the run's terminal event. Returns
   * true when the stream ended normally.
   */
  private async follow(connected: () => void): Promise<boolean> {
    const controller = new AbortController();
    this.controller = controller;
    this.connectedWith = givenToken();
    let stallTimer: ReturnType<typeof setTimeout> | undefined;
    const armStallTimer = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => controller.abort(new ConnectError("stream stalled", Code.Unavailable)), STALL_MS);
    };
    try {
      const snapshot = await this.api.runs.getRun({ runId: this.runId }, { signal: controller.signal });
      const head = Number(snapshot.run?.lastSeq ?? 0);
      if (this.lastSeq === 0 && head > LONG_RUN_EVENTS) {
        // Only the newest LONG_RUN_EVENTS events are replayed, to fill the feed and the
        // panels (output, thinking, models, phases) as a page open all along would show
        // them; the snapshot stands for everything before. Exact resume still holds: the
        // stream starts right after the seq the model was seeded at.
        this.lastSeq = head - LONG_RUN_EVENTS;
        await this.readEveryOpenDecision(snapshot, controller.signal);
        this.handlers.seed(snapshot, this.lastSeq);
      } else {
        this.handlers.snapshot(snapshot);
      }
      const stream = this.api.runs.watchRun(
        { runId: this.runId, afterSeq: BigInt(this.lastSeq), heartbeatInterval: { seconds: BigInt(HEARTBEAT_SECONDS), nanos: 0 } },
        {
          signal: controller.signal,
          timeoutMs: 0, // open until the run ends; the stall timer watches it
          // Live once the server took the watch (it answers with its headers at once), not
          // once the page asked: a watch refused at a limit would show Live between tries,
          // and each try, counted as connected, would start the backoff over.
          onHeader: () => {
            connected();
            this.handlers.state("live");
          },
        },
      );
      armStallTimer();
      for await (const response of stream) {
        armStallTimer();
        heardServerTime(response.heartbeat?.serverTime);
        if (response.events.length > 0) this.deliver(response.events, controller);
      }
      return !controller.signal.aborted;
    } finally {
      clearTimeout(stallTimer);
    }
  }

  private deliver(events: RunEvent[], controller: AbortController): void {
    const fresh: RunEvent[] = [];
    for (const event of events) {
      const seq = Number(event.seq);
      if (seq <= this.lastSeq) continue; // already applied: never show an event twice
      if (seq !== this.lastSeq + 1) {
        // A hole would mean a missed event; resume after the last good seq instead.
        controller.abort(new ConnectError(`expected seq ${this.lastSeq + 1}, got ${seq}`, Code.DataLoss));
        break;
      }
      fresh.push(event);
      this.lastSeq = seq;
    }
    if (fresh.length > 0) this.handlers.events(fresh);
  }
}

/**
 * When a failed call wants a token rather than a retry (UNAUTHENTICATED: none, or an expired
 * or bad one; PERMISSION_DENIED: one that may not view runs), says so on the indicator
 * ("signin" or "denied": nothing is reconnecting meanwhile), waits for the dialog's answer
 * and returns true; returns true at once when the token it refused was replaced since the
 * call went out (the caller calls again with the new one), and false for any other failure.
 */
export async function askedForToken(err: ConnectError, state: (state: LinkState, detail: string) => void): Promise<boolean> {
  const refusal = err.code === Code.Unauthenticated ? "unauthenticated" : err.code === Code.PermissionDenied ? "denied" : undefined;
  if (refusal === undefined) return false;
  if (refusedAnOlderToken(err)) return true; // a token was given since it was sent: call again
  state(refusal === "denied" ? "denied" : "signin", err.rawMessage);
  await askForToken(err.rawMessage, refusal);
  return true;
}
