// The run page's decision cards: the questions the run asks its humans, answered from their
// options (DecisionService.SubmitDecision through the session), each card staying where it was
// asked, with keyboard focus going on to the next open one. Above them, who answers: a name
// given once (./who), or on a server that wants tokens the token's subject.
import { DecisionOutcome } from "../../gen/runstream/v1/event_pb";
import { $, h, icon, reconcile, text } from "../dom";
import { byName, enumWords, formatDuration, jsonText, metricLabel } from "../format";
import { type DecisionItem, decisionClosedTitle } from "../model";
import type { RunSession } from "../session";
import { DEFAULT_NAME, NAME_CHARS, givenName, setName, tokenMayAnswer, tokenSubject } from "../who";

/** How many of a decision's context entries its card lists (by name; then "+3 more"). */
const CONTEXT_SHOWN = 6;
/** How many closed decisions stay on the page once none is open: those closed last. */
const RESOLVED_SHOWN = 2;

export class DecisionCards {
  /** The decisions closed, in the order this page saw them close. */
  private closedOrder: string[] = [];
  private closedSeen = new Set<string>();
  /** The cards the last render showed. */
  private shown = new Set<string>();
  /** Who answers: the name field, or the token's subject. */
  private readonly answerAs: HTMLElement;
  private readonly nameInput: HTMLInputElement;
  /** The cards, in the order asked. */
  private readonly list: HTMLElement;

  /** `section`: the run page's decisions section, which this fills. */
  constructor(
    private readonly section: HTMLElement,
    private readonly session: RunSession,
  ) {
    this.nameInput = h("input", {
      id: "answer-name",
      class: "answer-name",
      type: "text",
      name: "name",
      autocomplete: "name",
      maxlength: NAME_CHARS,
      placeholder: "your name",
      value: givenName(),
    });
    // Kept as it is typed: an option clicked next is answered under it.
    this.nameInput.addEventListener("input", () => setName(this.nameInput.value));
    this.nameInput.addEventListener("change", () => (this.nameInput.value = setName(this.nameInput.value)));
    this.answerAs = h(
      "div",
      { class: "answer-as" },
      h("label", { for: "answer-name" }, "Answering as"),
      this.nameInput,
      h("span", { class: "answer-as-note" }),
    );
    this.list = h("div", { class: "decision-list" });
    section.append(this.answerAs, this.list);
    section.addEventListener("click", (event) => void this.onClick(event));
    section.addEventListener("keydown", (event) => {
      // A held Enter clicks again and again: once focus moved on, it would answer the next
      // question with its first option.
      if (event.repeat && (event.key === "Enter" || event.key === " ")) event.preventDefault();
    });
  }

  /**
   * The decision cards, in the order they were asked. An answered card stays where it was,
   * showing its outcome, while any decision is open (the next card never slides under the
   * pointer); once none is, the RESOLVED_SHOWN closed last stay.
   */
  render(now: number): void {
    const decisions = this.sorted();
    for (const d of decisions) {
      if (isActive(d) || this.closedSeen.has(d.decisionId)) continue;
      this.closedSeen.add(d.decisionId);
      this.closedOrder.push(d.decisionId);
    }
    const anyOpen = decisions.some(isActive);
    const latest = new Set(this.closedOrder.slice(-RESOLVED_SHOWN));
    const shown = decisions.filter((d) => isActive(d) || latest.has(d.decisionId) || (anyOpen && this.shown.has(d.decisionId)));
    this.shown = new Set(shown.map((d) => d.decisionId));
    this.section.hidden = shown.length === 0;
    this.renderAnswerAs(anyOpen);
    reconcile(this.list, shown, (d) => d.decisionId, buildDecision, (el, d) => updateDecision(el, d, now, anyOpen));
  }

  /**
   * Who answers, while a decision is open: the name given (a field, remembered for every
   * tab), or with a token the subject the server will record (no field: the server would
   * not take the name).
   */
  private renderAnswerAs(anyOpen: boolean): void {
    const subject = tokenSubject();
    this.answerAs.hidden = !anyOpen;
    this.answerAs.dataset.by = subject === undefined ? "name" : "token";
    this.nameInput.hidden = subject !== undefined;
    let note = subject === undefined ? (this.nameInput.value.trim() ? "" : `(recorded as “${DEFAULT_NAME}”)`) : `${subject || "your token's subject"}, as signed in`;
    // A viewer's token is refused at the click: say so before it.
    if (subject !== undefined && tokenMayAnswer() === false) note += " (this token may not answer: the operator role is needed)";
    text($(this.answerAs, ".answer-as-note"), note);
  }

  private sorted(): DecisionItem[] {
    return [...this.session.model.decisions.values()].sort((a, b) => a.requestedSeq - b.requestedSeq);
  }

  private async onClick(event: MouseEvent): Promise<void> {
    const button = (event.target as Element).closest("button");
    const card = button?.closest<HTMLElement>("[data-decision-id]");
    if (!button || !card || button.disabled || button.getAttribute("aria-disabled") === "true") return;
    const id = card.dataset.decisionId ?? "";
    if (button.classList.contains("skip")) await this.session.answer(id, undefined);
    else if (button.dataset.choice !== undefined) await this.session.answer(id, button.dataset.choice);
    else return;
    // A click's `detail` is 0 when Enter or Space made it.
    this.focusAfterAnswer(card, event.detail === 0);
  }

  /**
   * Where focus goes once an answer came back. Taken: to the first option of the next open
   * decision (below, else the first above), so answering many goes on from the keyboard.
   * Closed otherwise (someone else answered first): to the card, which says so. Not taken
   * and still open: it stays on the option. A keyboard answer scrolls the next card into
   * view; a click's does not move the page under the pointer. Nothing moves focus that the
   * reader has since put elsewhere.
   */
  private focusAfterAnswer(card: HTMLElement, byKeyboard: boolean): void {
    const item = this.session.model.decisions.get(card.dataset.decisionId ?? "");
    const focused = document.activeElement;
    if (!item || isActive(item) || (focused && focused !== document.body && !card.contains(focused))) return;
    const open = this.sorted().filter((d) => d.open && d.submitting === undefined);
    const next = item.error || item.refusal ? undefined : (open.find((d) => d.requestedSeq > item.requestedSeq) ?? open[0]);
    const target = next && this.section.querySelector<HTMLElement>(`[data-decision-id="${CSS.escape(next.decisionId)}"] .options button`);
    (target ?? card).focus({ preventScroll: !byKeyboard });
  }
}

/** Numbers the decision prompts' element ids ("decision-prompt-3"). */
let promptIds = 0;

/**
 * A decision's card: a group named by its prompt, whose options are described by it, so a
 * screen reader says which question an "Approve" answers.
 */
function buildDecision(d: DecisionItem): HTMLElement {
  const promptId = `decision-prompt-${++promptIds}`;
  const about = { type: "button", "aria-describedby": promptId };
  const options = d.options.map((o) =>
    h("button", { class: "option", "data-choice": o.value, title: o.description || null, ...about }, h("span", { class: "option-label" }, o.label || o.value), o.description ? h("small", null, o.description) : null),
  );
  // By name, the first CONTEXT_SHOWN and how many more, as the CLI shows a context.
  const entries = Object.entries(d.context ?? {}).sort(byName);
  const context = entries.slice(0, CONTEXT_SHOWN).map(([k, v]) => h("li", null, h("span", { class: "muted" }, metricLabel(k)), " ", jsonText(v, k)));
  if (entries.length > CONTEXT_SHOWN) context.push(h("li", { class: "muted" }, `+${entries.length - CONTEXT_SHOWN} more`));
  return h(
    "section",
    { class: "decision", "data-decision-id": d.decisionId, tabindex: -1, role: "group", "aria-labelledby": promptId },
    h("div", { class: "decision-icon" }, icon("question")),
    h(
      "div",
      { class: "decision-body" },
      h("div", { class: "decision-head" }, h("h3", null, "Input needed"), h("span", { class: "decision-type" }, d.decisionType.replace(/_/g, " ")), h("span", { class: "decision-deadline" })),
      h("p", { class: "decision-prompt", id: promptId }, d.prompt),
      context.length ? h("ul", { class: "decision-context" }, ...context) : null,
      h("div", { class: "options" }, ...options, d.canSkip ? h("button", { class: "skip", ...about }, "Skip") : null),
      h("p", { class: "decision-outcome", role: "status" }),
      h("p", { class: "decision-error", role: "alert" }),
    ),
  );
}

/** Open, or on its way to the server (this page's answer). */
function isActive(d: DecisionItem): boolean {
  return d.open || d.submitting !== undefined;
}

/**
 * `kept`: a closed card keeps its size (every option, the context) while other decisions
 * are open, so nothing below it moves; it shrinks to its question and outcome after.
 */
function updateDecision(el: HTMLElement, d: DecisionItem, now: number, kept: boolean): void {
  const state = d.submitting !== undefined ? "submitting" : d.open ? "open" : "resolved";
  if (el.dataset.state !== state) {
    el.dataset.state = state;
    $(el, ".decision-icon").replaceChildren(icon(state === "resolved" ? "check" : "question"));
  }
  el.toggleAttribute("data-kept", state === "resolved" && kept);
  for (const button of Array.from(el.querySelectorAll("button"))) {
    // While the answer is on its way the options only say they are unavailable: a disabled
    // button would drop the keyboard focus on the page's body.
    button.disabled = state === "resolved";
    if (state === "submitting") button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    button.classList.toggle("chosen", state !== "open" && (button.dataset.choice === (d.submitting ?? d.choice) && button.dataset.choice !== undefined));
  }
  const deadline = $(el, ".decision-deadline");
  const left = d.deadline !== undefined ? d.deadline - now : undefined;
  const fallback = d.defaultOption ? `“${d.options.find((o) => o.value === d.defaultOption)?.label || d.defaultOption}”` : "";
  let due = "";
  if (state === "open" && left !== undefined) {
    // Past the deadline the server closes it: at once, or once the page hears from it again
    // (a lost link), so no countdown stands at "0 ms" meanwhile.
    if (left > 0) due = `closes in ${formatDuration(left)}${fallback ? `, then ${fallback}` : ""}`;
    else due = fallback ? `deadline passed: closing with ${fallback}` : "deadline passed: closing unanswered";
  }
  text(deadline, due);
  let outcome = "";
  if (state === "submitting") outcome = "Sending your answer…";
  else if (state === "resolved") {
    const label = d.options.find((o) => o.value === d.choice)?.label || d.choice;
    if (d.outcome === DecisionOutcome.ANSWERED) outcome = `Answered “${label}”${d.answeredBy ? ` by ${d.answeredBy}` : ""}`;
    else if (d.outcome === DecisionOutcome.DEFAULTED) outcome = `No answer in time: went with “${label}”`;
    else if (d.outcome !== DecisionOutcome.UNSPECIFIED) outcome = enumWords(DecisionOutcome[d.outcome]);
    else outcome = "Closed"; // how is not known yet (its DecisionResolved has not come)
  }
  text($(el, ".decision-outcome"), outcome);
  text($(el, ".decision-error"), d.refusal ?? d.error ?? "");
  text($(el, ".decision-head h3"), state === "resolved" ? decisionClosedTitle(d.outcome) : "Input needed");
}
