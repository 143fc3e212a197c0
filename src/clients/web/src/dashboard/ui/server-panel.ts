// The overview's server panel: the answering replica's key figures (StatsService.GetStats),
// polled every 5 s while the panel is on the page. GetStats needs the admin role when the
// server wants tokens, so the panel hides itself when the call is refused, until another
// token is given.
import type { Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus } from "../../gen/runstream/v1/run_pb";
import type { ServerStats } from "../../gen/runstream/v1/stats_service_pb";
import type { Api } from "../api";
import { tokenGiven } from "../auth";
import { $, attr, h, text } from "../dom";
import { compact, durationMillis, enumWords, formatDuration } from "../format";

const POLL_MS = 5000;

/** "0 B", "812 KB", "4.2 MB": the store's size on disk. */
function bytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 || value >= 10 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function figure(name: string, label: string): HTMLElement {
  return h("div", { class: "server-figure", "data-figure": name }, h("div", { class: "server-figure-value" }, "–"), h("div", { class: "server-figure-label" }, label));
}

/**
 * Builds the panel and starts polling; the polling stops by itself once the panel has left
 * the page (the overview is rebuilt each time it is shown), and when refused waits for
 * another token.
 */
export function serverPanel(api: Api): HTMLElement {
  const root = h(
    "section",
    { class: "server-panel", "aria-label": "Server", "data-state": "loading" },
    h("div", { class: "server-head" }, h("h2", null, "Server"), h("span", { class: "server-meta muted" })),
    h(
      "div",
      { class: "server-figures" },
      figure("uptime", "Uptime"),
      figure("watchers", "Watchers"),
      figure("producers", "Producers"),
      figure("appended", "Appended / min"),
      figure("delivered", "Delivered / min"),
      figure("latency", "Append p50 / p99"),
      figure("store-size", "Store size"),
    ),
    h("ul", { class: "server-runs" }),
  );
  let attached = false;

  const tick = async (): Promise<void> => {
    if (root.isConnected) attached = true;
    else if (attached) return; // the overview was replaced: stop
    try {
      const { stats } = await api.stats.getStats({});
      if (stats) render(root, stats);
      attr(root, "data-state", "live");
    } catch (error) {
      const code = ConnectError.from(error).code;
      if (code === Code.PermissionDenied || code === Code.Unauthenticated) {
        root.hidden = true;
        attr(root, "data-state", "refused");
        // Not an admin: the role will not change under this token, but may under the next
        // one given. Unauthenticated: the token dialog is up; the next call waits for it,
        // then shows the panel if allowed.
        if (code === Code.PermissionDenied) {
          void tokenGiven().then(tick);
          return;
        }
      } else {
        attr(root, "data-state", "offline"); // keeps the last figures, tries again
      }
    }
    setTimeout(() => void tick(), POLL_MS);
  };
  void tick();
  return root;
}

/** A Duration in milliseconds with its fraction: appends often take less than one. */
function preciseMillis(d: Duration | undefined): number {
  return d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0;
}

/** p50 and p99 in few characters: "0.42 / 3.1 ms", "12 / 240 ms", "850 ms / 1.2 s". */
function latencies(p50: number, p99: number): string {
  const digits = (ms: number) => (ms < 1 ? ms.toFixed(2) : ms < 10 ? ms.toFixed(1) : String(Math.round(ms)));
  if (p99 < 999.5) return `${digits(p50)} / ${digits(p99)} ms`;
  return `${formatDuration(p50)} / ${formatDuration(p99)}`;
}

function set(root: HTMLElement, name: string, value: string, raw: string): void {
  const el = $(root, `[data-figure="${name}"]`);
  attr(el, "data-value", raw);
  text($(el, ".server-figure-value"), value);
}

function render(root: HTMLElement, stats: ServerStats): void {
  root.hidden = false;
  const meta = [stats.serverVersion && `v${stats.serverVersion}`, stats.storeKind].filter(Boolean).join(" · ");
  text($(root, ".server-meta"), meta);
  const uptime = durationMillis(stats.uptime) ?? 0;
  set(root, "uptime", formatDuration(uptime), String(uptime));
  set(root, "watchers", compact(stats.watchers), String(stats.watchers));
  set(root, "producers", compact(stats.producers), String(stats.producers));
  const appended = Number(stats.eventsAppendedLastMinute);
  const delivered = Number(stats.eventsDeliveredLastMinute);
  set(root, "appended", compact(appended), String(appended));
  set(root, "delivered", compact(delivered), String(delivered));
  const p50 = preciseMillis(stats.appendLatencyP50);
  const p99 = preciseMillis(stats.appendLatencyP99);
  set(root, "latency", appended ? latencies(p50, p99) : "–", `${p50}/${p99}`);
  const size = Number(stats.storeSizeBytes);
  set(root, "store-size", stats.storeKind === "redis" ? "in Redis" : bytes(size), String(size));
  const runs = $(root, ".server-runs");
  runs.replaceChildren(
    ...stats.runsByStatus.map((c) => {
      const status = RunStatus[c.status];
      return h("li", { class: "status-pill", "data-status": status, "data-count": String(c.count) }, `${enumWords(status)} ${compact(Number(c.count))}`);
    }),
  );
}
