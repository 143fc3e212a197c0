// Bearer tokens for the dashboard: when the server answers UNAUTHENTICATED the page asks for
// a token (saying why the last one was refused), keeps it in sessionStorage for this tab
// only, and sends it as `authorization: Bearer <token>` on every call. Calls made while the
// question is open wait for the answer; the run list and the run watcher wait for it too
// (the indicator says "Sign-in needed", not "Reconnecting…"), then call again.
// A token the server knows but that may not view runs (PERMISSION_DENIED on a read) is no
// passing trouble: the run list and the run watcher ask for another one (askForToken with
// "denied") instead of retrying.
// A token can also be changed at will ("Use another token": changeToken): the new one goes
// with every later call, and the page's streams open again with it (onTokenChange).
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { h } from "./dom";

const KEY = "runstream.token";

let asking: Promise<void> | undefined;
const waiting: Array<() => void> = [];
let memoryToken: string | null = null; // when sessionStorage is disabled

function storedToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: ask again on each refusal
  }
}

/** The token the page sends, or null when it has none. */
export function givenToken(): string | null {
  return storedToken() ?? memoryToken;
}

/** Why the dialog asks: no valid token, or a valid one without the viewer role. */
export type Refusal = "unauthenticated" | "denied";

const TITLES: Record<Refusal, string> = {
  unauthenticated: "Sign in to Runstream",
  denied: "This token may not view runs",
};

const PROMPTS: Record<Refusal, string> = {
  unauthenticated: "Paste a bearer token (a JWT). It is kept for this tab only.",
  denied: "Paste another bearer token (a JWT), one with the viewer role. It is kept for this tab only.",
};

const CHANGE_TITLE = "Use another token";
const CHANGE_PROMPT =
  "Paste a bearer token (a JWT) to use instead of this tab's: every call and live view of the page goes on with it. It is kept for this tab only.";

/** The parts of a token dialog. */
interface TokenDialog {
  dialog: HTMLDialogElement;
  input: HTMLInputElement;
}

/** A token dialog, not yet shown: `cancel` adds a Cancel button (the question may be put away). */
function tokenDialog(title: string, reason: string | undefined, prompt: string, refusal: string, cancel: boolean): TokenDialog {
  const input = h("input", {
    id: "token-input",
    type: "password",
    name: "token",
    autocomplete: "off",
    required: true,
    placeholder: "eyJhbGciOi…",
    "aria-label": "Bearer token",
  });
  const dialog = h(
    "dialog",
    { id: "token-dialog", class: "token-dialog", "aria-labelledby": "token-title", "data-refusal": refusal },
    h(
      "form",
      { id: "token-form", method: "dialog" },
      h("h2", { id: "token-title" }, title),
      reason === undefined ? null : h("p", { class: "token-reason", id: "token-reason" }, `The server said: ${reason}`),
      h("p", null, prompt),
      input,
      h(
        "div",
        { class: "token-actions" },
        h("button", { type: "submit" }, "Use token"),
        cancel ? h("button", { type: "button", id: "token-cancel", class: "secondary" }, "Cancel") : null,
      ),
    ),
  );
  return { dialog, input };
}

/**
 * The token typed in `input`, or undefined when there is none (spaces, or "Bearer" alone):
 * the form's own submission would then close the dialog with nothing given, so it is
 * stopped and the field emptied.
 */
function typedToken(event: Event, input: HTMLInputElement): string | undefined {
  const token = input.value.trim().replace(/^Bearer(?:\s+|$)/i, "");
  if (token) return token;
  event.preventDefault();
  input.value = "";
  input.focus();
  return undefined;
}

const changeListeners: Array<() => void> = [];

/**
 * Calls `listener` whenever the dialog replaces the page's token with another one: the
 * page's streams, opened with the old token, are then opened again with the new one.
 */
export function onTokenChange(listener: () => void): void {
  changeListeners.push(listener);
}

/** Keeps `token` for this tab, wakes whoever waits for one, and says so if it is another. */
function keep(token: string): void {
  const before = givenToken();
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    memoryToken = token;
  }
  for (const wake of waiting.splice(0)) wake();
  if (token !== before) for (const listener of changeListeners) listener();
}

/** The "Use another token" dialog while it is open, and how to put it away. */
let changing: { dialog: HTMLDialogElement; close(): void } | undefined;

/**
 * Shows the token dialog (once, however many calls were refused) until a token is given;
 * the first refusal names the dialog's title and reason.
 */
export function askForToken(reason: string, refusal: Refusal = "unauthenticated"): Promise<void> {
  // A refusal while the user was about to change the token: the question that must be
  // answered replaces the one that may be put away.
  changing?.close();
  asking ??= new Promise<void>((resolve) => {
    const { dialog, input } = tokenDialog(TITLES[refusal], reason, PROMPTS[refusal], refusal, false);
    dialog.addEventListener("cancel", (event) => event.preventDefault()); // Esc: still needed
    dialog.querySelector("form")?.addEventListener("submit", (event) => {
      const token = typedToken(event, input);
      if (token === undefined) return;
      dialog.remove();
      asking = undefined;
      resolve();
      keep(token);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/**
 * Asks for a token to use instead of the page's (a viewer's token when answering needs an
 * operator's, one of another tenant): a dialog that Cancel or Esc puts away, the old token
 * kept. Nothing happens while the dialog asking for a token after a refusal is up.
 */
export function changeToken(): void {
  if (asking) return;
  if (changing) {
    changing.dialog.querySelector("input")?.focus();
    return;
  }
  const { dialog, input } = tokenDialog(CHANGE_TITLE, undefined, CHANGE_PROMPT, "change", true);
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const close = () => {
    if (changing?.dialog !== dialog) return; // closed already (a submitted form closes it too)
    dialog.remove();
    changing = undefined;
    opener?.focus();
  };
  changing = { dialog, close };
  dialog.addEventListener("close", close); // Esc
  dialog.querySelector("#token-cancel")?.addEventListener("click", close);
  dialog.querySelector("form")?.addEventListener("submit", (event) => {
    const token = typedToken(event, input);
    if (token === undefined) return;
    close();
    keep(token);
  });
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
}

/** Resolves when a token is next given in the dialog (one that may do more, perhaps). */
export function tokenGiven(): Promise<void> {
  return new Promise((resolve) => waiting.push(resolve));
}

// Refusals of a token given up since: the call went out before the dialog's answer (the page's
// first calls, sent at once, are refused one after the other), and its caller calls again
// with the new token rather than ask for one again.
const outdated = new WeakSet<object>();

/** Whether `error` refused a token that the dialog has replaced since the call was sent. */
export function refusedAnOlderToken(error: unknown): boolean {
  return typeof error === "object" && error !== null && outdated.has(error);
}

function refused(error: unknown, sent: string | null): void {
  const err = ConnectError.from(error);
  if (err.code !== Code.Unauthenticated && err.code !== Code.PermissionDenied) return;
  if (givenToken() !== sent) {
    outdated.add(err); // the error the call throws (from() returns a ConnectError as it is)
    return;
  }
  if (err.code === Code.Unauthenticated) void askForToken(err.rawMessage);
}

async function* watched<T>(messages: AsyncIterable<T>, sent: string | null): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    refused(error, sent); // a stream whose token expired ends UNAUTHENTICATED
    throw error;
  }
}

/** The transport interceptor: waits for an open token question, sends the token. */
export const authInterceptor: Interceptor = (next) => async (req) => {
  if (asking) await asking;
  const token = givenToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    const res = await next(req);
    return res.stream ? { ...res, message: watched(res.message, token) } : res;
  } catch (error) {
    refused(error, token);
    throw error;
  }
};
