// The sidebar: every run with its status and progress, in the order RunsFeed.list() gives
// (waiting for input, then the others not ended, then those ended; newest first in each).
import { type Run, RunHealth, RunStatus } from "../../gen/runstream/v1/run_pb";
import { serverNow } from "../clock";
import { $, attr, h, reconcile, text } from "../dom";
import { ago, enumWords, millis, percentText } from "../format";
import { isTerminal } from "../model";

export function renderRunList(container: HTMLElement, runs: Run[], selected: string | undefined, now = serverNow()): void {
  reconcile(
    container,
    runs,
    (run) => run.runId,
    (run) =>
      h(
        "li",
        null,
        h(
          "a",
          { class: "run-item", href: `#/runs/${encodeURIComponent(run.runId)}`, "data-run-id": run.runId },
          h(
            "div",
            { class: "run-item-top" },
            h("span", { class: "run-item-name" }),
            h("span", { class: "pill small status-pill" }),
            h("span", { class: "pill small health-pill", hidden: true }),
          ),
          h("div", { class: "run-item-meta" }),
          h("div", { class: "mini-progress" }, h("span")),
        ),
      ),
    (el, run) => {
      const link = $(el, "a");
      attr(link, "aria-current", run.runId === selected ? "page" : "false");
      text($(el, ".run-item-name"), run.displayName || run.workflow || run.runId);
      const pill = $(el, ".status-pill");
      attr(pill, "data-status", RunStatus[run.status] ?? "UNSPECIFIED");
      text(pill, enumWords(RunStatus[run.status]));
      // Only a stall: "Pending" or "Running" alone would say all is well when nothing moves
      // (a run whose producer stopped before its first event stays Pending). An ended run
      // moves no more: its status says all, so a stall before it ended is not shown here.
      const health = $(el, ".health-pill");
      health.hidden = run.health !== RunHealth.STALLED || isTerminal(run.status);
      attr(health, "data-health", health.hidden ? "" : "STALLED");
      // The server's reason says why and since when; runs stored before runs kept one have none.
      const fallback = run.status === RunStatus.PENDING ? "Never started: its producer may have stopped" : "No report from its producer for a while";
      attr(health, "title", health.hidden ? "" : run.healthReason || fallback);
      text(health, health.hidden ? "" : "Stalled");
      const percent = run.status === RunStatus.SUCCEEDED ? 100 : (run.progress?.percent ?? 0);
      text($(el, ".run-item-meta"), [run.workflow, ago(millis(run.createTime), now), percentText(percent)].filter(Boolean).join(" · "));
      const bar = $(el, ".mini-progress");
      attr(bar, "data-status", RunStatus[run.status] ?? "UNSPECIFIED");
      ($(bar, "span") as HTMLElement).style.width = `${percent}%`;
    },
  );
}
