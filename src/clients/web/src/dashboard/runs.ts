// The runs list: WatchRuns (every run's state as it changes: every run not ended, and as many
// of the newest ended runs as the list shows), or ListRuns polling on a server that does not
// offer WatchRuns. Reconnects with backoff like the run watcher. The sidebar shows a page of
// runs at a time, those not ended first (more on demand, a WatchRuns stream opened again for
// as many); the counts are over every run known.
import { Code, ConnectError } from "@connectrpc/connect";
import { type Run, RunStatus } from "../gen/runstream/v1/run_pb";
import type { Api } from "./api";
import { givenToken } from "./auth";
import { heardServerTime } from "./clock";
import { millis } from "./format";
import { isTerminal } from "./model";
import { retryDelay, sleep } from "./retry";
import { type LinkState, askedForToken } from "./watch";

const POLL_MS = 2500;
/** How many runs the list shows at first, and how many more each "Show more runs" adds. */
const PAGE = 100;
/** The most ended runs a WatchRuns stream's initial state may ask for (the server's rule). */
const MAX_ENDED = 100_000;

export class RunsFeed {
  private runs = new Map<string, Run>();
  private stopped = false;
  private controller: AbortController | undefined;
  private limit = PAGE;
  private wake: (() => void) | undefined;
  /** WatchRuns is streaming: it pushes each run's viewer count as it changes. */
  private pushing = false;
  /** The stream is being opened again for more runs (its end is not a lost connection). */
  private reopening = false;
  /** The token the open stream was made with (undefined before the first). */
  private connectedWith: string | null | undefined;
  /** The runs known were read with a token replaced since: the next list replaces them all. */
  private readWithOldToken = false;
  /** A WatchRuns initial state was complete, and no connection was lost since. */
  private activeKnown = false;
  /**
   * False while older runs are left unfetched (ListRuns had a next page, or WatchRuns left
   * ended runs out): the runs known are then the newest ones only, and counts over them are
   * lower bounds.
   */
  complete = true;
  /** A first list of runs has come (WatchRuns' initial state, or a ListRuns poll): until then
   * the page knows nothing about the runs and must not say there are none. */
  loaded = false;

  constructor(
    private readonly api: Api,
    private readonly changed: (runs: Run[]) => void,
    private readonly state: (state: LinkState) => void,
  ) {}

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  /**
   * Every run known, in the order the list shows them: those waiting for input, then the
   * others not ended, then those ended, each most recently created first. As `runstream runs
   * --watch` lists them (runs not ended first), so that no number of newer ended runs pushes
   * a run that needs attention past the page shown.
   */
  list(): Run[] {
    return [...this.runs.values()].sort((a, b) => attention(a) - attention(b) || (millis(b.createTime) ?? 0) - (millis(a.createTime) ?? 0));
  }

  /** How many runs the list shows, the first of list(). */
  get shown(): number {
    return this.limit;
  }

  /** Whether runs beyond those shown exist (known, or not yet fetched). */
  get more(): boolean {
    return this.runs.size > this.limit || !this.complete;
  }

  /** Whether every run not ended is known (WatchRuns sends them all, whatever it leaves out). */
  get activeComplete(): boolean {
    return this.complete || this.activeKnown;
  }

  /** Shows another page of older runs; polling, or WatchRuns opened again, fetches them. */
  showMore(): void {
    this.limit += PAGE;
    this.changed(this.list());
    if (this.pushing && !this.complete && this.limit - PAGE < MAX_ENDED) {
      this.reopening = true;
      this.controller?.abort();
    }
    this.wake?.();
  }

  /**
   * The page's token was replaced: a stream made with the old one is opened again with the
   * new one (whose runs may be others: another tenant's), and polling polls at once.
   */
  tokenChanged(): void {
    this.readWithOldToken = true;
    if (this.connectedWith !== undefined && this.connectedWith !== givenToken()) this.controller?.abort();
    this.wake?.();
  }

  /** The run as the list has it, if it does. */
  get(runId: string): Run | undefined {
    return this.runs.get(runId);
  }

  /**
   * Merges a run seen elsewhere (an open run's snapshot) so the list agrees with it. While
   * WatchRuns streams, the viewer count it pushed stays: a snapshot read before the last
   * change of the count would put an older one back, and nothing would correct it.
   */
  update(run: Run): void {
    const known = this.runs.get(run.runId);
    if (!known || known.lastSeq <= run.lastSeq) {
      this.runs.set(run.runId, known && this.pushing ? { ...run, viewerCount: known.viewerCount } : run);
      this.changed(this.list());
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let streaming = true;
    while (!this.stopped) {
      try {
        if (streaming) {
          try {
            await this.stream(() => {
              failures = 0;
              this.pushing = true;
            });
            this.activeKnown = false; // the server ended the stream: until the next is complete
          } finally {
            this.pushing = false;
          }
        } else {
          await this.poll();
          failures = 0;
          this.state("live");
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            setTimeout(resolve, POLL_MS);
          });
          continue;
        }
      } catch (error) {
        if (this.stopped) return;
        if (this.reopening) {
          this.reopening = false;
          continue;
        }
        if (streaming && this.connectedWith !== givenToken()) {
          // Made with a token replaced since (closed for it, or refused): open it again.
          failures = 0;
          continue;
        }
        this.activeKnown = false;
        const err = ConnectError.from(error);
        if (err.code === Code.Unimplemented) {
          streaming = false; // an older server: poll instead
          continue;
        }
        // No token, or one that may not view runs: no retry makes it, a token might.
        if (await askedForToken(err, (state) => this.state(state))) {
          failures = 0;
          continue;
        }
        failures += 1;
        this.state("reconnecting");
        await sleep(retryDelay(err, failures));
      }
    }
  }

  private async stream(connected: () => void): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    this.connectedWith = givenToken();
    const fresh = new Map<string, Run>();
    let initial = true;
    const request = { heartbeatInterval: { seconds: 10n, nanos: 0 }, initialEndedLimit: Math.min(this.limit, MAX_ENDED) };
    for await (const response of this.api.runs.watchRuns(request, { signal: controller.signal, timeoutMs: 0 })) {
      connected();
      this.state("live");
      heardServerTime(response.heartbeat?.serverTime);
      for (const run of response.runs) (initial ? fresh : this.runs).set(run.runId, run);
      if (response.initialStateComplete && initial) {
        initial = false;
        // The old token's ended runs are not the new one's to keep (another tenant's).
        this.runs = settled(this.readWithOldToken ? new Map() : this.runs, fresh, response.endedRunsLeftOut);
        this.readWithOldToken = false;
        this.complete = !response.endedRunsLeftOut;
        this.loaded = true;
        this.activeKnown = true;
      }
      if (!initial && (response.runs.length > 0 || response.initialStateComplete)) this.changed(this.list());
    }
  }

  /** Fetches the newest runs, as many as the list shows, a page of ListRuns at a time. */
  private async poll(): Promise<void> {
    const runs = new Map<string, Run>();
    let pageToken = "";
    do {
      const response = await this.api.runs.listRuns({ pageSize: PAGE, pageToken });
      for (const run of response.runs) runs.set(run.runId, run);
      pageToken = response.nextPageToken;
    } while (pageToken && runs.size < this.limit);
    this.runs = runs;
    this.complete = pageToken === "";
    this.loaded = true;
    this.changed(this.list());
  }
}

/**
 * The runs known once a stream's initial state is complete: the runs it sent, and of those
 * known before, the ended ones it left out for its limit (as old as the oldest ended run it
 * sent, or older: an ended run changes no more, so the page's copy holds). A stream opened
 * again for more runs, or after a lost connection, then never lowers the counts; any other
 * run it did not send is gone (removed while the page was away) and leaves the list.
 */
function settled(known: Map<string, Run>, fresh: Map<string, Run>, endedLeftOut: boolean): Map<string, Run> {
  if (!endedLeftOut) return fresh;
  const created = (run: Run) => millis(run.createTime) ?? 0;
  let oldestSent = Infinity;
  for (const run of fresh.values()) if (isTerminal(run.status)) oldestSent = Math.min(oldestSent, created(run));
  for (const [runId, run] of known) {
    if (!fresh.has(runId) && isTerminal(run.status) && created(run) <= oldestSent) fresh.set(runId, run);
  }
  return fresh;
}

/** Where a run's status puts it in the list: waiting for input first, ended last. */
function attention(run: Run): number {
  if (run.status === RunStatus.WAITING_FOR_INPUT) return 0;
  return isTerminal(run.status) ? 2 : 1;
}
