// What the dashboard writes for people, from its pure functions: durations, "ago" times,
// counts, money, percents and metric values (format.ts), the fields line of an event of a kind
// the feed has no case for (fields.ts), and the name and token subject a page acts as
// (who.ts). Run with node's test runner by tests/e2e/test_dashboard_format.py, TZ=UTC, with
// the browser's storage stood in for by a Map.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import { fieldsText } from "../src/dashboard/fields";
import {
  ago,
  byName,
  compact,
  durationMillis,
  enumWords,
  formatDuration,
  hue,
  initials,
  jsonText,
  metricLabel,
  metricValue,
  millis,
  money,
  percentText,
} from "../src/dashboard/format";
import { actingAs, givenName, setName, tokenSubject } from "../src/dashboard/who";

/** localStorage and sessionStorage as a browser has them, for who.ts and auth.ts. */
class MapStorage {
  private readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}
Object.assign(globalThis, { localStorage: new MapStorage(), sessionStorage: new MapStorage() });

test("durations read in the unit that suits them, rounded once", () => {
  const cases: Array<[number | undefined, string]> = [
    [undefined, "–"],
    [Number.NaN, "–"],
    [-40, "0 ms"], // a clock a little behind never makes time run backwards
    [999.4, "999 ms"],
    [1000, "1.0 s"],
    [4200, "4.2 s"],
    [9990, "10 s"], // not "10.0 s"
    [59_400, "59 s"],
    [60_000, "1 m 00 s"],
    [65_000, "1 m 05 s"],
    [299_600, "5 m 00 s"], // not "4 m 59 s" nor "4 m 60 s"
    [3_599_000, "59 m 59 s"],
    [3_600_000, "1 h 00 m"],
    [5_400_000, "1 h 30 m"],
    [7_380_000, "2 h 03 m"],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `formatDuration(${ms})`);
});

test("timestamps and durations turn into milliseconds", () => {
  assert.equal(millis({ seconds: 12n, nanos: 345_678_901 } as never), 12_345);
  assert.equal(millis(undefined), undefined);
  assert.equal(durationMillis({ seconds: 2n, nanos: 500_000_000 } as never), 2_500);
  assert.equal(durationMillis(undefined), undefined);
});

test("how long ago reads in the unit that suits it, rounded down", () => {
  const now = Date.UTC(2026, 5, 1, 12);
  const cases: Array<[number, string]> = [
    [-5_000, "just now"], // a timestamp ahead of the clock
    [2_999, "just now"],
    [3_000, "3 s ago"],
    [59_999, "59 s ago"],
    [60_000, "1 min ago"],
    [119_000, "1 min ago"],
    [3_599_000, "59 min ago"],
    [3_600_000, "1 h ago"],
    [86_399_000, "23 h ago"],
  ];
  for (const [before, text] of cases) assert.equal(ago(now - before, now), text, `${before} ms ago`);
  const twoDays = now - 2 * 86_400_000;
  assert.equal(ago(twoDays, now), new Date(twoDays).toLocaleDateString());
  assert.equal(ago(undefined, now), "");
});

test("counts are grouped below ten thousand and shortened above", () => {
  const cases: Array<[number, string]> = [
    [0, "0"],
    [1234, "1,234"],
    [9999, "9,999"],
    [3.456, "3.46"],
    [10_000, "10.0k"],
    [84_300, "84.3k"],
    [1_234_567, "1.23M"],
    [12_345_678, "12.3M"],
    [-2_500_000, "-2.50M"],
    [1_500_000_000, "1.50B"],
    [25_000_000_000, "25.0B"],
    // Rounded up to the next unit, or to ten of one, as it reads.
    [999_960, "1.00M"],
    [-999_960, "-1.00M"],
    [9_996_000, "10.0M"],
    [999_960_000, "1.00B"],
    [9_999_999_999, "10.0B"],
    [99_960, "100.0k"],
  ];
  for (const [n, text] of cases) assert.equal(compact(n), text, `compact(${n})`);
});

test("money keeps cents, and four places under a cent so a cost is never $0.00", () => {
  assert.equal(money(0.42), "$0.42");
  assert.equal(money(12.3), "$12.30");
  assert.equal(money(0.0031), "$0.0031");
  assert.equal(money(0), "$0.00");
});

test("metrics are labelled and valued by what their names say", () => {
  assert.equal(metricLabel("impressions"), "Impressions");
  assert.equal(metricLabel("cost_usd"), "Cost");
  assert.equal(metricLabel("ctr"), "CTR");
  assert.equal(metricLabel("click-through_rate"), "Click through rate");
  // Names an object has of its own are metrics' names like any other.
  assert.equal(metricLabel("constructor"), "Constructor");
  assert.equal(jsonText({ toString: 2 }), "ToString 2");
  assert.equal(metricValue("spent_usd", 93.5), "$93.50");
  assert.equal(metricValue("cost", 0.0031), "$0.0031");
  assert.equal(metricValue("ctr", 0.0512), "5.12%");
  assert.equal(metricValue("ctr", 1), "100.00%");
  assert.equal(metricValue("conversion_rate", 3), "3"); // over 1: a count, not a share
  assert.equal(metricValue("clicks", 12_000), "12.0k");
});

test("JSON values read as text, keys as labels", () => {
  assert.equal(jsonText({ clicks: 1200, ctr: 0.05 }), "Clicks 1,200 · CTR 5.00%");
  assert.equal(jsonText(true), "yes");
  assert.equal(jsonText(false), "no");
  assert.equal(jsonText(null), "–");
  assert.equal(jsonText(["a", 2]), "a, 2");
  const names: Array<[string, unknown]> = [["b", 1], ["a", 2], ["B", 3]];
  assert.deepEqual(names.sort(byName).map(([name]) => name), ["B", "a", "b"]);
});

test("enum names, initials, hues and percents", () => {
  assert.equal(enumWords("WAITING_FOR_INPUT"), "Waiting for input");
  assert.equal(enumWords(undefined), "Unknown");
  assert.equal(initials("Strategy Team"), "ST");
  assert.equal(initials("strategy team lead"), "ST");
  assert.equal(initials("data_engineer"), "DE");
  assert.equal(initials("writer"), "WR");
  assert.equal(initials("  "), "?");
  // Colours spread round the whole wheel, and a name keeps its own.
  const hues = ["writer", "editor", "researcher", "critic", "planner", "coder", "tester", "designer"].map(hue);
  assert.ok(hues.every((h) => h >= 0 && h < 360), String(hues));
  assert.ok(Math.max(...hues) >= 120, String(hues));
  assert.equal(hue("writer"), hue("writer"));
  const percents: Array<[number, string]> = [
    [0, "0%"],
    [49.6, "49%"],
    [64, "64%"],
    [99.3, "99.3%"],
    [99.98, "99.9%"], // never "100.0%" while the run still runs
    [100, "100%"],
  ];
  for (const [p, text] of percents) assert.equal(percentText(p), text, `percentText(${p})`);
});

/** A message with a field of every kind fields.ts tells apart, built from its descriptor. */
function sample(): DescMessage {
  const field = (name: string, number: number, type: Type, extra: object = {}) => ({
    name,
    number,
    type,
    label: Label.OPTIONAL,
    jsonName: name,
    ...extra,
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "sample.proto",
    package: "sample",
    syntax: "proto3",
    dependency: ["google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/struct.proto"],
    enumType: [{ name: "Level", value: [{ name: "LEVEL_UNSPECIFIED", number: 0 }, { name: "LEVEL_LOW", number: 1 }, { name: "LEVEL_HIGH", number: 2 }] }],
    messageType: [
      {
        name: "Sample",
        field: [
          field("count", 1, Type.INT32),
          field("label", 2, Type.STRING),
          field("level", 3, Type.ENUM, { typeName: ".sample.Level" }),
          field("tags", 4, Type.STRING, { label: Label.REPEATED }),
          field("attrs", 5, Type.MESSAGE, { label: Label.REPEATED, typeName: ".sample.Sample.AttrsEntry" }),
          field("when", 6, Type.MESSAGE, { typeName: ".google.protobuf.Timestamp" }),
          field("took", 7, Type.MESSAGE, { typeName: ".google.protobuf.Duration" }),
          field("data", 8, Type.BYTES),
          field("extra", 9, Type.MESSAGE, { typeName: ".google.protobuf.Struct" }),
          field("inner", 10, Type.MESSAGE, { typeName: ".sample.Sample" }),
          field("flag", 11, Type.BOOL),
          field("text", 12, Type.STRING, { oneofIndex: 0 }),
          field("amount", 13, Type.INT32, { oneofIndex: 0 }),
          field("ratio", 14, Type.DOUBLE),
        ],
        oneofDecl: [{ name: "choice" }],
        nestedType: [
          {
            name: "AttrsEntry",
            field: [field("key", 1, Type.STRING), field("value", 2, Type.INT32)],
            options: { mapEntry: true },
          },
        ],
      },
    ],
  });
  const known = [file_google_protobuf_timestamp, file_google_protobuf_duration, file_google_protobuf_struct];
  const registry = createFileRegistry(file, (name) => known.find((f) => f.proto.name === name));
  const desc = registry.getMessage("sample.Sample");
  assert.ok(desc);
  return desc;
}

/** The fields line of a Sample made from `init`. */
function line(init: Record<string, unknown>): string {
  const desc = sample();
  return fieldsText(desc, create(desc, init));
}

test("an event's fields read in field number order, unset ones left out", () => {
  assert.equal(line({ count: 0, label: "x", flag: false, ratio: 0 }), "label: x");
  assert.equal(line({ ratio: 0.5, count: 3 }), "count: 3 · ratio: 0.5");
  assert.equal(line({ ratio: 0.1 + 0.2 }), "ratio: 0.3");
  assert.equal(line({ choice: { case: "amount", value: 0 } }), "amount: 0"); // chosen, though zero
  assert.equal(line({ choice: { case: "text", value: "" } }), "text: ");
  assert.equal(line({ level: 2, flag: true, data: new Uint8Array(3) }), "level: HIGH · data: 3 bytes · flag: yes");
  assert.equal(line({ level: 7 }), "level: 7"); // a value newer than the page
  assert.equal(line({ when: { seconds: BigInt(12 * 3600 + 4 * 60 + 31), nanos: 0 }, took: { seconds: 65n, nanos: 0 } }), "when: 12:04:31 · took: 1 m 05 s");
});

test("six fields are shown, then how many more; lists, maps and structs show three", () => {
  const six = { count: 1, label: "l", level: 1, tags: ["t"], data: new Uint8Array(1), flag: true };
  assert.equal(line(six), "count: 1 · label: l · level: LOW · tags: [t] · data: 1 bytes · flag: yes");
  assert.equal(line({ ...six, ratio: 2, choice: { case: "text", value: "hi" } }), "count: 1 · label: l · level: LOW · tags: [t] · data: 1 bytes · flag: yes · +2 more");
  assert.equal(line({ tags: ["a", "b", "c"] }), "tags: [a, b, c]");
  assert.equal(line({ tags: ["a", "b", "c", "d", "e"] }), "tags: [a, b, c, +2 more]");
  assert.equal(line({ attrs: { b: 2, d: 4, a: 1, c: 3 } }), "attrs: {a: 1, b: 2, c: 3, +1 more}");
  assert.equal(line({ extra: { b: 1, a: { x: 1 }, c: [1], d: null } }), "extra: {a: {…}, b: 1, c: […], +1 more}");
});

test("nested messages open two deep and long text is cut at 80 characters", () => {
  assert.equal(line({ inner: { label: "a", inner: { label: "b" } } }), "inner: {label: a · inner: {…}}");
  assert.equal(line({ label: "x".repeat(80) }), `label: ${"x".repeat(80)}`);
  assert.equal(line({ label: "y".repeat(81) }), `label: ${"y".repeat(79)}…`);
});

test("a name is kept clean, and a page with a token acts as its subject", () => {
  assert.equal(givenName(), "");
  assert.equal(actingAs(), "dashboard");
  assert.equal(setName("  ana\u0007 lima\u202e\u200f  "), "ana lima");
  assert.equal(givenName(), "ana lima");
  assert.equal(actingAs(), "ana lima");
  assert.equal(setName("n".repeat(300)).length, 128);
  assert.equal(setName(""), "");
  assert.equal(givenName(), "");
  setName("ana lima");
  assert.equal(tokenSubject(), undefined);
  // The subject's base64url has "-" and "_", which atob alone refuses.
  const subject = "ops>>~~~??";
  const payload = Buffer.from(JSON.stringify({ sub: subject })).toString("base64url");
  assert.match(payload, /[-_]/);
  sessionStorage.setItem("runstream.token", `e30.${payload}.sig`);
  assert.equal(tokenSubject(), subject);
  assert.equal(actingAs(), "dashboard"); // the server records the token's subject, not the name
  const noSubject = Buffer.from(JSON.stringify({ sub: 42 })).toString("base64url");
  sessionStorage.setItem("runstream.token", `e30.${noSubject}.sig`);
  assert.equal(tokenSubject(), "");
  sessionStorage.setItem("runstream.token", "not-a-jwt");
  assert.equal(tokenSubject(), "");
});
