// Formatting for people: durations, times, counts, money and metric values.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { serverNow } from "./clock";

/** Milliseconds since the epoch, or undefined for an unset timestamp. */
export function millis(ts: Timestamp | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}

/** A protobuf Duration in milliseconds, or undefined when unset. */
export function durationMillis(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** "850 ms", "4.2 s", "1 m 05 s", "2 h 03 m". */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 9950) return `${(ms / 1000).toFixed(1)} s`;
  // Whole seconds from here on, rounded once, so 299.6 s reads "5 m 00 s", not "4 m 60 s".
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

/** "12:04:31" in the viewer's time zone. */
export function clock(ms: number | undefined): string {
  if (ms === undefined) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** "just now", "5 s ago", "3 min ago", "2 h ago", or a date. */
export function ago(ms: number | undefined, now = serverNow()): string {
  if (ms === undefined) return "";
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 3) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

/** 1234 -> "1,234"; 1_234_567 -> "1.23M"; 84_300 -> "84.3k"; 999_960 -> "1.00M". */
export function compact(n: number): string {
  if (Math.abs(n) >= 1e4) {
    // The unit is chosen by the figure as it reads, rounded: 999,960 is "1.00M", not
    // "1000.0k", as formatDuration's 299.6 s is "5 m 00 s".
    for (const [size, unit] of [[1e3, "k"], [1e6, "M"]] as const) {
      const figure = inUnit(n, size);
      if (Math.abs(Number(figure)) < 1000) return `${figure}${unit}`;
    }
    return `${inUnit(n, 1e9)}B`;
  }
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

/** `n` in thousands, millions or billions: two places under 10 ("1.23M", as it rounds:
 * 9,996,000 is "10.0M"), one from 10 ("84.3k", "12.3M"). */
function inUnit(n: number, size: number): string {
  const figure = n / size;
  const two = figure.toFixed(2);
  return Math.abs(Number(two)) < 10 ? two : figure.toFixed(1);
}

/** "$0.42", "$12.30", "$0.0031". */
export function money(usd: number): string {
  if (usd !== 0 && Math.abs(usd) < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

/** "impressions" -> "Impressions", "cost_usd" -> "Cost", "ctr" -> "CTR". */
export function metricLabel(name: string): string {
  const special = new Map([["ctr", "CTR"], ["cpc", "CPC"], ["cpa", "CPA"], ["fps", "FPS"], ["cost_usd", "Cost"]]);
  const label = special.get(name); // a Map: "constructor" is a metric's name, not Object's
  if (label) return label;
  const words = name.replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A metric value formatted by what its name says it is. */
export function metricValue(name: string, value: number): string {
  const lower = name.toLowerCase();
  if (lower.endsWith("usd") || lower.startsWith("cost")) return money(value);
  if ((lower === "ctr" || lower.endsWith("_rate") || lower.endsWith("ratio")) && Math.abs(value) <= 1) {
    return `${(value * 100).toFixed(2)}%`;
  }
  return compact(value);
}

/** Upper snake case enum names to words: "WAITING_FOR_INPUT" -> "Waiting for input". */
export function enumWords(name: string | undefined): string {
  if (!name) return "Unknown";
  const words = name.toLowerCase().replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Initials for an avatar: "Strategy Team" -> "ST". */
export function initials(name: string): string {
  const parts = name.replace(/[_-]+/g, " ").trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "?";
  if (parts.length === 1) return parts[0].slice(0, 2).toUpperCase();
  return (parts[0][0] + parts[1][0]).toUpperCase();
}

/** A stable hue for a name, so an agent keeps its colour everywhere. */
export function hue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
  return h;
}

/** A percent for display: "64%", "99.5%" just before the end, never "100%" unless it is. */
export function percentText(p: number): string {
  if (p >= 100) return "100%";
  // Rounded down: 99.98 is "99.9%", never "100.0%" while the run still runs.
  if (p > 99) return `${(Math.floor(p * 10) / 10).toFixed(1)}%`;
  return `${Math.floor(p)}%`;
}

/** A JSON value in a line of text: numbers formatted, objects as "key value" pairs. */
export function jsonText(value: unknown, key = ""): string {
  if (typeof value === "number") return metricValue(key, value);
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (value === null || value === undefined) return "–";
  if (Array.isArray(value)) return value.map((v) => jsonText(v, key)).join(", ");
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => `${metricLabel(k)} ${jsonText(v, k)}`)
    .join(" · ");
}

/** Orders [name, value] entries by name, in code point order (as the CLI's Python sorts). */
export function byName([a]: [string, unknown], [b]: [string, unknown]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
