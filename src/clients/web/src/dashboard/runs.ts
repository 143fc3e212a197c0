// The runs list: WatchRuns (every run's state as it changes), or ListRuns polling on a server
// that does not offer WatchRuns. Reconnects with backoff like the run watcher.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Run } from "../gen/runstream/v1/run_pb";
import type { Api } from "./api";
import { askForToken } from "./auth";
import { millis } from "./format";
import type { LinkState } from "./watch";

const POLL_MS = 2500;
const LIST_LIMIT = 100;

export class RunsFeed {
  private runs = new Map<string, Run>();
  private stopped = false;
  private controller: AbortController | undefined;

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

  /** The runs, most recently created first. */
  list(): Run[] {
    return [...this.runs.values()]
      .sort((a, b) => (millis(b.createTime) ?? 0) - (millis(a.createTime) ?? 0))
      .slice(0, LIST_LIMIT);
  }

  /** Merges a run seen elsewhere (an open run's snapshot) so the list agrees with it. */
  update(run: Run): void {
    const known = this.runs.get(run.runId);
    if (!known || known.lastSeq <= run.lastSeq) {
      this.runs.set(run.runId, run);
      this.changed(this.list());
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let streaming = true;
    while (!this.stopped) {
      try {
        if (streaming) {
          await this.stream(() => {
            failures = 0;
          });
        } else {
          await this.poll();
          failures = 0;
          this.state("live");
          await sleep(POLL_MS);
          continue;
        }
      } catch (error) {
        if (this.stopped) return;
        const err = ConnectError.from(error);
        if (err.code === Code.Unimplemented) {
          streaming = false; // an older server: poll instead
          continue;
        }
        if (err.code === Code.PermissionDenied) {
          // The token may not view runs: no retry makes it, another token might.
          this.state("denied");
          await askForToken(err.rawMessage, "denied");
          failures = 0;
          continue;
        }
        failures += 1;
        this.state("reconnecting");
        await sleep(Math.min(4000, 250 * 2 ** failures));
      }
    }
  }

  private async stream(connected: () => void): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    const fresh = new Map<string, Run>();
    let initial = true;
    for await (const response of this.api.runs.watchRuns({ heartbeatInterval: { seconds: 10n, nanos: 0 } }, { signal: controller.signal })) {
      connected();
      this.state("live");
      for (const run of response.runs) (initial ? fresh : this.runs).set(run.runId, run);
      if (response.initialStateComplete && initial) {
        // Replace, not merge: runs deleted while disconnected disappear.
        initial = false;
        this.runs = fresh;
      }
      if (!initial && (response.runs.length > 0 || response.initialStateComplete)) this.changed(this.list());
    }
  }

  private async poll(): Promise<void> {
    const response = await this.api.runs.listRuns({ pageSize: LIST_LIMIT });
    this.runs = new Map(response.runs.map((run) => [run.runId, run]));
    this.changed(this.list());
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
