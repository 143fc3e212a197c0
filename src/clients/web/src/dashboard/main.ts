// The Runstream dashboard: a list of runs and, for the selected run, everything it reports,
// live over grpc-web through Envoy. Routes: #/ (overview) and #/runs/RUN_ID.
import { type Run, RunStatus } from "../gen/runstream/v1/run_pb";
import { type Api, createApi, resolveBaseUrl } from "./api";
import { changeToken, onTokenChange } from "./auth";
import { $, attr, h, text } from "./dom";
import { serverNow } from "./clock";
import { percentText } from "./format";
import { isTerminal } from "./model";
import { RunsFeed } from "./runs";
import { RunSession } from "./session";
import { renderRunList } from "./ui/run-list";
import { RunView } from "./ui/run-view";
import { serverPanel } from "./ui/server-panel";
import { dropAnsweredToasts, showToasts } from "./ui/toasts";
import type { LinkState } from "./watch";
import { tokenSubject } from "./who";

const LINK_LABELS: Record<LinkState, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  ended: "Run ended",
  failed: "Cannot show",
  signin: "Sign-in needed",
  denied: "No access",
};

async function main(): Promise<void> {
  const app = $(document, "#app");
  const main = $(app, "#main");
  const list = $(app, "#run-list");
  const toasts = $(app, "#toasts");
  const api = createApi(await resolveBaseUrl());
  attr(app, "data-api", api.baseUrl);

  let session: RunSession | undefined;
  let view: RunView | undefined;
  let overview: HTMLElement | undefined;
  let runsLink: LinkState = "connecting";
  let frame = 0;

  const schedule = () => {
    if (frame === 0) frame = requestAnimationFrame(render);
  };
  const runs = new RunsFeed(api, schedule, (state) => {
    runsLink = state;
    schedule();
  });

  function open(runId: string): void {
    if (session?.runId === runId) return;
    session?.stop();
    toasts.replaceChildren(); // another run's news
    session = new RunSession(api, runId, schedule, (run: Run) => runs.update(run));
    view = new RunView(session);
    overview = undefined;
    main.replaceChildren(view.root);
    window.scrollTo(0, 0);
    session.start();
    schedule();
  }

  function showOverview(): void {
    session?.stop();
    session = undefined;
    view = undefined;
    overview = buildOverview(api);
    main.replaceChildren(overview);
    schedule();
  }

  // Below 860 px the run list is a drawer behind the Runs button; picking a run closes it.
  const toggle = $(app, "#runs-toggle");
  const backdrop = $(app, "#drawer-backdrop");
  function drawer(open: boolean): void {
    attr(app, "data-drawer", open ? "open" : "closed");
    attr(toggle, "aria-expanded", String(open));
    backdrop.hidden = !open;
  }
  toggle.addEventListener("click", () => drawer(app.dataset.drawer !== "open"));
  backdrop.addEventListener("click", () => drawer(false));
  list.addEventListener("click", (event) => {
    drawer(false);
    retryFailed(event);
  });
  main.addEventListener("click", retryFailed); // the overview's list of runs
  // A run picked again from a list while its page failed (a link opened before the run was
  // created): the hash does not change, so no hashchange would open it again.
  function retryFailed(event: Event): void {
    const id = (event.target as Element).closest<HTMLElement>("[data-run-id]")?.dataset.runId;
    if (id !== undefined && session?.runId === id && session.link === "failed") {
      session.stop();
      session = undefined;
      open(id);
    }
  }
  $(app, "#runs-more").addEventListener("click", () => runs.showMore());

  // Another token for this tab: every stream opens again with it; a run the old one could
  // not show (another tenant's) is looked up again.
  $(app, "#change-token").addEventListener("click", () => changeToken());
  onTokenChange(() => {
    runs.tokenChanged();
    if (session?.link === "failed") {
      const id = session.runId;
      session.stop();
      session = undefined;
      open(id);
    } else session?.tokenChanged();
    schedule();
  });

  function decoded(text: string): string | undefined {
    try {
      return decodeURIComponent(text);
    } catch {
      return undefined;
    }
  }

  function route(): void {
    drawer(false);
    const match = /^#\/runs\/(.+)$/.exec(location.hash);
    const runId = match ? decoded(match[1]) : undefined;
    if (runId !== undefined) open(runId);
    else showOverview(); // no run named, or a link whose escapes do not decode (%zz)
  }

  function render(): void {
    frame = 0;
    const now = serverNow(); // server timestamps are compared with it
    const all = runs.list();
    renderRunList(list, all.slice(0, runs.shown), session?.runId, now);
    $(app, "#runs-more").hidden = !runs.more;
    text($(app, "#run-count"), all.length ? atLeast(all.length, runs.complete) : "");
    $(app, "#runs-empty").hidden = all.length > 0 || !runs.loaded;
    if (session && view) {
      session.model.listedViewers = runs.get(session.runId)?.viewerCount;
      view.render(now);
      const model = session.model;
      showToasts(toasts, model.takeToasts());
      dropAnsweredToasts(toasts, (id) => model.decisions.get(id)?.open ?? false);
      const snap = session.model.snapshot;
      const name = snap?.displayName || snap?.workflow || session.runId;
      text($(app, "#crumb-run"), name);
      const percent = session.model.status === RunStatus.SUCCEEDED ? 100 : (snap?.progress?.percent ?? 0);
      const plain = isTerminal(session.model.status) ? `${name} · Runstream` : `${percentText(percent)} · ${name} · Runstream`;
      const asking = [...model.decisions.values()].filter((d) => d.open).length;
      document.title = waiting(asking) + plain;
    } else {
      text($(app, "#crumb-run"), "");
      document.title = `${waiting(all.filter((r) => r.status === RunStatus.WAITING_FOR_INPUT).length)}Runstream`;
      if (overview) renderOverview(overview, all, runs, now);
    }
    // Who the page's token names, never the token itself.
    const subject = tokenSubject();
    $(app, "#signed-in").hidden = subject === undefined;
    text($(app, "#signed-in-as"), subject ? `Signed in as ${subject}` : "Signed in with a token");
    const link = session ? session.link : runsLink;
    attr(app, "data-connection", link);
    const conn = $(app, "#conn");
    attr(conn, "title", session?.linkDetail || (link === "live" ? `Connected to ${api.baseUrl}` : ""));
    text($(conn, ".conn-label"), LINK_LABELS[link]);
  }

  window.addEventListener("hashchange", route);
  // Clocks (elapsed, ETA, "5 s ago") move even when no event arrives.
  setInterval(schedule, 1000);
  runs.start();
  route();
}

function buildOverview(api: Api): HTMLElement {
  return h(
    "div",
    { class: "overview" },
    h(
      "section",
      { class: "card hero" },
      h("h1", null, "Live runs, exactly as they happen"),
      h("p", { class: "muted" }, "Pick a run from the list to follow its steps, agents, reasoning and output live. The page resumes where it left off if the connection drops."),
      h("ul", { class: "run-list overview-runs" }),
      h("div", { class: "overview-stats" }),
      h(
        "p",
        { class: "hint", hidden: true },
        "No runs yet? Report one with the Python SDK, or start the simulated campaign: ",
        h("code", null, "runstream demo --target HOST:PORT"),
      ),
    ),
    serverPanel(api),
  );
}

/**
 * The start of the tab's title while people are asked something: "(2) " for two open
 * questions of the run shown, or two runs waiting for input on the overview, so a tab in
 * the background says so; "" when none.
 */
function waiting(n: number): string {
  return n > 0 ? `(${n}) ` : "";
}

/** A count, with "+" when it is over the newest runs only (older ones not fetched). */
function atLeast(n: number, complete: boolean): string {
  return complete ? String(n) : `${n}+`;
}

function renderOverview(el: HTMLElement, runs: Run[], known: { complete: boolean; activeComplete: boolean; loaded: boolean }, now: number): void {
  // The list again, inline, for screens where the sidebar is a drawer.
  renderRunList($(el, ".overview-runs"), runs.slice(0, 20), undefined, now);
  $(el, ".hint").hidden = runs.length > 0 || !known.complete || !known.loaded; // the hint is for no runs at all
  const count = (status: RunStatus) => runs.filter((r) => r.status === status).length;
  const stats: Array<[string, number, string, boolean]> = [
    ["Running", count(RunStatus.RUNNING) + count(RunStatus.WAITING_FOR_INPUT) + count(RunStatus.PAUSED), "RUNNING", known.activeComplete],
    ["Succeeded", count(RunStatus.SUCCEEDED), "SUCCEEDED", known.complete],
    ["Failed", count(RunStatus.FAILED) + count(RunStatus.CANCELLED), "FAILED", known.complete],
  ];
  const container = $(el, ".overview-stats");
  container.replaceChildren(
    ...stats.map(([label, n, status, complete]) => h("div", { class: "stat", "data-status": status }, h("div", { class: "stat-value" }, known.loaded ? atLeast(n, complete) : "–"), h("div", { class: "stat-label" }, label))),
  );
}

void main();
