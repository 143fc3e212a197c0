// Who acts from this page: the name its user gave once (kept in localStorage, for every tab
// of the dashboard), sent as a decision's answered_by and as who paused, resumed or
// cancelled a run; "dashboard" until one is given. On a server that wants tokens the server
// records the token's subject whatever a request says, so the page then offers no name and
// sends none of its user's: the name field gives way to the subject the token names.
import { givenToken } from "./auth";

const KEY = "runstream.name";

/** Who the dashboard says acted when its user gave no name. */
export const DEFAULT_NAME = "dashboard";

/** The most characters a name keeps (the server takes 256). */
export const NAME_CHARS = 128;

let memoryName = ""; // when localStorage is disabled

/** The name the user gave, "" when none. */
export function givenName(): string {
  try {
    return localStorage.getItem(KEY) ?? "";
  } catch {
    return memoryName;
  }
}

/**
 * Keeps a name for the next answers (an empty one forgets it). Control characters, which
 * the server refuses in names, are dropped; so are spaces at either end.
 */
export function setName(name: string): string {
  const clean = name.replace(/[\p{Cc}\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/gu, "").trim().slice(0, NAME_CHARS);
  try {
    if (clean) localStorage.setItem(KEY, clean);
    else localStorage.removeItem(KEY);
  } catch {
    memoryName = clean;
  }
  return clean;
}

/**
 * The name a request says acted: the user's, unless the page sends a token (the server then
 * records the token's subject; the generic name stands for a server that ignores tokens).
 */
export function actingAs(): string {
  return givenToken() !== null ? DEFAULT_NAME : givenName() || DEFAULT_NAME;
}

/**
 * The subject of the token the page sends ("" when it cannot be read), or undefined without
 * one: who a server that wants tokens records. Read for display only; the server checks it.
 */
export function tokenSubject(): string | undefined {
  const token = givenToken();
  if (token === null) return undefined;
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : "";
  } catch {
    return "";
  }
}
