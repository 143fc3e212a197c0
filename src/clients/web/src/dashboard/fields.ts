// A message's set fields in a line of text, from its descriptor: "limit_usd: 100 · spent_usd:
// 93.5 · +2 more". The feed says an event of a kind it has no case for this way, after the
// kind's name, as the terminal view does (runstream/cli/view_fields.py). The page shows the
// line as text, never as HTML (dom.ts's h() makes text nodes), whatever its producer wrote.
import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { byName, clock, durationMillis, formatDuration, millis } from "./format";

/** The set fields a line shows; the rest are counted ("+2 more"). */
export const FIELDS_SHOWN = 6;

/** The entries of a list, a map or a Struct a field's value shows; the rest are counted. */
export const ITEMS_SHOWN = 3;

/** The characters of a text a field's value shows, with "…" where it is cut. */
export const VALUE_CHARS = 80;

/** How deep messages inside the one said are opened: deeper ones show as "{…}". */
const NESTED = 2;

/** The message's set fields, in field number order, each as "name: value". */
export function fieldsText(desc: DescMessage, message: object, depth = 1): string {
  const parts: string[] = [];
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) {
    const value = valueOf(field, message);
    if (isSet(field, value)) parts.push(`${field.name}: ${fieldText(field, value, depth)}`);
  }
  return listed(parts, FIELDS_SHOWN, " · ");
}

function listed(parts: string[], most: number, between: string): string {
  const more = parts.length > most ? `${between}+${parts.length - most} more` : "";
  return parts.slice(0, most).join(between) + more;
}

function valueOf(field: DescField, message: object): unknown {
  const record = message as Record<string, unknown>;
  if (!field.oneof) return record[field.localName];
  const chosen = record[field.oneof.localName] as { case?: string; value?: unknown };
  return chosen.case === field.localName ? chosen.value : undefined;
}

/** Set as proto3 says: a member of a oneof chosen, a message present, anything else not empty or zero. */
function isSet(field: DescField, value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (field.oneof || field.fieldKind === "message") return true;
  if (field.fieldKind === "list" || value instanceof Uint8Array) return (value as ArrayLike<unknown>).length > 0;
  if (field.fieldKind === "map") return Object.keys(value).length > 0;
  return value !== "" && value !== 0 && value !== false && value !== 0n;
}

function fieldText(field: DescField, value: unknown, depth: number): string {
  if (field.fieldKind === "list") {
    return `[${listed((value as unknown[]).map((item) => single(field, item, depth)), ITEMS_SHOWN, ", ")}]`;
  }
  if (field.fieldKind === "map") {
    const entries = Object.entries(value as Record<string, unknown>).sort(byName);
    return `{${listed(entries.map(([key, item]) => `${key}: ${single(field, item, depth)}`), ITEMS_SHOWN, ", ")}}`;
  }
  return single(field, value, depth);
}

function single(field: DescField, value: unknown, depth: number): string {
  if (field.enum) return enumText(field.enum, value as number);
  if (field.message) return messageText(field.message, value, depth + 1);
  return scalarText(value);
}

/** "HIGH" for SEVERITY_HIGH: the value's name without its enum's prefix; a number for a value newer than this page. */
function enumText(desc: DescEnum, number: number): string {
  return desc.values.find((value) => value.number === number)?.localName ?? String(number);
}

function messageText(desc: DescMessage, value: unknown, depth: number): string {
  if (typeof value !== "object") return scalarText(value); // a wrapper (StringValue ...), unwrapped
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return clock(millis(value as Timestamp));
    case "google.protobuf.Duration":
      return formatDuration(durationMillis(value as Duration));
    case "google.protobuf.Struct":
      return jsonText(value as JsonObject);
    case "google.protobuf.ListValue":
    case "google.protobuf.Value":
      return jsonText(value as JsonValue);
  }
  return depth > NESTED ? "{…}" : `{${fieldsText(desc, value as object, depth)}}`;
}

/** A Struct's value: its keys in order with their scalars, a nested object or list as "{…}", "[…]". */
function jsonText(value: JsonValue, nested = false): string {
  if (Array.isArray(value)) return nested ? "[…]" : `[${listed(value.map((item) => jsonText(item, true)), ITEMS_SHOWN, ", ")}]`;
  if (value !== null && typeof value === "object") {
    if (nested) return "{…}";
    const entries = Object.entries(value).sort(byName);
    return `{${listed(entries.map(([key, item]) => `${key}: ${jsonText(item, true)}`), ITEMS_SHOWN, ", ")}}`;
  }
  return value === null ? "null" : scalarText(value);
}

function scalarText(value: unknown): string {
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  const text = String(value);
  return text.length <= VALUE_CHARS ? text : `${text.slice(0, VALUE_CHARS - 1)}…`;
}
