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
  const claims = tokenClaims();
  if (claims === undefined) return undefined;
  return typeof claims?.sub === "string" ? claims.sub : "";
}

/**
 * Whether the token the page sends may answer decisions, by its `roles` claim (a list, or
 * names separated by spaces, as the server reads it): false for a token that grants neither
 * operator nor admin, undefined without a token or when it cannot be read. For display only:
 * the page says so before its user clicks; the server decides.
 */
export function tokenMayAnswer(): boolean | undefined {
  const claims = tokenClaims();
  if (claims === undefined || claims === null) return undefined;
  const roles = typeof claims.roles === "string" ? claims.roles.split(/\s+/) : claims.roles;
  if (roles === undefined) return false;
  if (!Array.isArray(roles)) return undefined;
  return roles.includes("operator") || roles.includes("admin");
}

/** The claims of the token the page sends: undefined without one, null when unreadable. */
function tokenClaims(): { sub?: unknown; roles?: unknown } | null | undefined {
  const token = givenToken();
  if (token === null) return undefined;
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims === "object" && claims !== null ? (claims as { sub?: unknown; roles?: unknown }) : null;
  } catch {
    return null;
  }
}
