// The run's activity feed: one line per notable event, newest on top, added once each; the
// run's earlier activity loaded backwards on request; an alert's suggested action as a button.
import { EventKind } from "../../gen/runstream/v1/event_pb";
import { $, h, icon, reconcile, text } from "../dom";
import { ago } from "../format";
import { FEED_KINDS, FEED_LIMIT, type FeedItem, type RunAction } from "../model";
import type { RunSession } from "../session";

export class ActivityFeed {
  private renderedSeq = 0;

  /** `confirmCancel` opens the run's cancel confirmation (an alert may suggest a cancel). */
  constructor(
    private readonly card: HTMLElement,
    private readonly session: RunSession,
    private readonly confirmCancel: () => void,
  ) {
    $(card, ".feed").dataset.feedKinds = FEED_KINDS.map((k) => EventKind[k]).join(",");
    card.addEventListener("click", (event) => this.onClick(event));
  }

  /** Adds feed entries once each, newest on top, and never rebuilds those shown. */
  render(now: number): void {
    const feed = $(this.card, ".feed");
    const fresh = this.session.model.feed.filter((item) => item.seq > this.renderedSeq);
    const history = this.session.model.historySeq;
    for (const item of fresh) {
      const el = buildFeedItem(item);
      // Only what happens while watching slides in; replayed history just appears.
      if (item.seq > history) el.classList.add("live");
      feed.prepend(el);
      this.renderedSeq = item.seq;
    }
    // Entries from before the oldest shown (a long run's feed filled in after its replayed
    // events) go below it.
    const oldest = Number((feed.lastElementChild as HTMLElement | null)?.dataset.seq);
    for (const item of this.session.model.feed.filter((i) => i.seq < oldest).reverse()) feed.append(buildFeedItem(item));
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild?.remove();
    $(this.card, ".feed-empty").hidden = feed.children.length > 0;
    const { model } = this.session;
    const more = $(this.card, ".load-older") as HTMLButtonElement;
    const state = this.session.older;
    const ended = this.session.olderEnd;
    more.hidden = model.startSeq === 0 || ended !== undefined;
    more.disabled = state === "loading";
    text(
      more,
      state === "loading" ? "Loading earlier activity…" : state === "failed" ? this.session.olderError || "Could not load; try again" : `Load earlier activity (events 1–${model.olderBefore - 1})`,
    );
    const end = $(this.card, ".older-end");
    end.hidden = model.startSeq === 0 || ended === undefined;
    text(end, ended === "purged" ? "Earlier activity was removed by the server's retention policy." : "This is the start of the run.");
    reconcile($(this.card, ".feed-older"), model.olderFeed, (item) => String(item.seq), buildFeedItem, () => undefined);
    for (const el of Array.from(feed.children) as HTMLElement[]) {
      const time = Number(el.dataset.time);
      if (time) text($(el, ".feed-ago"), ago(time, now));
    }
  }

  private onClick(event: Event): void {
    const button = (event.target as Element).closest<HTMLButtonElement>("button");
    if (!button || button.disabled) return;
    if (button.classList.contains("load-older")) {
      void this.session.loadOlder();
      return;
    }
    const action = button.dataset.action as RunAction | undefined;
    if (action === "cancel") this.confirmCancel();
    else if (action) void this.session.control(action);
  }
}

function buildFeedItem(item: FeedItem): HTMLElement {
  return h(
    "li",
    { class: "feed-item", "data-seq": item.seq, "data-kind": EventKind[item.kind], "data-tone": item.tone, "data-time": item.time ?? "" },
    h("span", { class: "feed-icon" }, icon(item.icon)),
    h(
      "div",
      { class: "feed-body" },
      h("div", { class: "feed-title" }, item.title),
      item.detail ? h("div", { class: "feed-detail" }, item.detail) : null,
      h("div", { class: "feed-meta" }, item.who ? h("span", null, item.who) : null, h("span", { class: "feed-ago" }), h("span", { class: "feed-seq" }, `#${item.seq}`)),
      item.action ? h("button", { class: "feed-action", type: "button", "data-action": item.action.action }, item.action.label) : null,
    ),
  );
}
