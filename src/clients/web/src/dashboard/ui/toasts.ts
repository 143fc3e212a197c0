// Milestone, decision and alert toasts: they rise at the bottom right (newest lowest) and
// leave after a few seconds.
import { h, icon } from "../dom";
import type { Toast } from "../model";

const SHOW_MS = 6000;
const MAX_VISIBLE = 3;

export function showToasts(container: HTMLElement, toasts: Toast[]): void {
  for (const toast of toasts) {
    const el = h(
      "div",
      { class: "toast", "data-tone": toast.tone, "data-toast-seq": toast.seq, "data-decision-id": toast.decisionId, role: "status" },
      h("span", { class: "toast-icon" }, icon(toast.tone === "success" ? "trophy" : toast.tone === "danger" ? "alert" : "question")),
      h("div", null, h("div", { class: "toast-title" }, toast.title), toast.detail ? h("div", { class: "toast-detail" }, toast.detail) : null),
    );
    container.append(el);
    setTimeout(() => {
      el.classList.add("leaving");
      setTimeout(() => el.remove(), 400);
    }, SHOW_MS);
  }
  while (container.children.length > MAX_VISIBLE) container.firstElementChild?.remove();
}

/** Removes the "input needed" toasts of decisions that are no longer open. */
export function dropAnsweredToasts(container: HTMLElement, isOpen: (decisionId: string) => boolean): void {
  for (const el of Array.from(container.querySelectorAll<HTMLElement>("[data-decision-id]"))) {
    if (!isOpen(el.dataset.decisionId ?? "")) el.remove();
  }
}
