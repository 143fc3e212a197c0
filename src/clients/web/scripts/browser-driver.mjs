// Drives Debian's Chromium with playwright-core for the Python browser tests
// (tests/e2e/test_browser.py), one command per line on stdin, one JSON answer per line on
// stdout. The tests keep the logic; this script only turns their commands into Playwright
// calls, so a test reads top to bottom in Python next to the server and Envoy it controls.
//
// Commands: {"id": 1, "op": "goto", "url": "..."}; ops: goto, wait (a JS expression that
// must become truthy), eval (a JS expression), click (a CSS selector), viewport (width and
// height: a phone is 390x844), screenshot (a path), errors (page errors and console errors
// so far), unimplemented (calls to a gRPC method, "runstream.v1.RunService/WatchRuns", end
// UNIMPLEMENTED from here on, as on a server without it), replylost (calls to a gRPC method
// reach the server, and their reply is lost on the way back after `delayMs`), calls (how
// many calls of a gRPC method the page has made so far, preflights not counted), press (a key,
// "Enter" or "Tab", pressed where the focus is), keydown and keyup (a key held: a second
// keydown before the keyup repeats, as a held key does), ax (the role, name and description
// Chromium's accessibility tree gives the element a selector matches: what a screen reader
// says), serve (requests for URLs matching `pattern`, "**/app.js", answered with the file at
// `path`: a bundle the test built), skew (the page's clock `seconds` off the real one, and
// under the test's control from then on), fastforward (that clock jumps `ms` ahead, firing
// the timers due meanwhile), hang (calls to a gRPC method from here on get no answer at all,
// not even headers: a half-open connection), unhang (later calls are answered again; those
// left hanging stay so), hold (calls to a gRPC method from here on wait on the way out, not
// yet sent to the server), release (the calls held go on to the server, and later ones
// are sent at once), close.
// Answers: {"id": 1, "ok": true, "value": ...} or {"id": 1, "ok": false, "error": "..."}.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: CHROMIUM_ARGS,
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const problems = [];
page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console: ${message.text()}`);
});

// Records every activity feed entry the page ever adds, in order, including entries the
// feed later drops past its 50: what the tests compare with the server's event log.
await context.addInitScript(() => {
  window.__feedSeqs = [];
  const seen = (node) => {
    if (node.nodeType !== 1) return;
    const hits = node.matches("[data-seq]") ? [node] : Array.from(node.querySelectorAll("[data-seq]"));
    for (const el of hits) if (el.closest(".feed")) window.__feedSeqs.push(Number(el.dataset.seq));
  };
  new MutationObserver((records) => {
    for (const record of records) record.addedNodes.forEach(seen);
  }).observe(document, { childList: true, subtree: true });
});

// Every gRPC call the page makes, by path ("/runstream.v1.RunService/ListEvents"): what a
// test counts to see how much of a log the page read.
const calls = new Map();
page.on("request", (request) => {
  if (request.method() !== "POST") return; // a CORS preflight is not a call
  const path = new URL(request.url()).pathname;
  calls.set(path, (calls.get(path) ?? 0) + 1);
});

// The Chrome DevTools Protocol session `ax` reads the accessibility tree with, made once.
let devtools;

async function accessible(selector) {
  devtools ??= await context.newCDPSession(page);
  const { root } = await devtools.send("DOM.getDocument", { depth: 0 });
  const { nodeId } = await devtools.send("DOM.querySelector", { nodeId: root.nodeId, selector });
  if (!nodeId) throw new Error(`no element matches ${selector}`);
  const { nodes } = await devtools.send("Accessibility.getPartialAXTree", { nodeId, fetchRelatives: false });
  const node = nodes[0] ?? {};
  return { role: node.role?.value ?? "", name: node.name?.value ?? "", description: node.description?.value ?? "" };
}

const hanging = new Set();
// The methods whose calls are held, each with the calls it holds (their routes, to go on).
const holding = new Map();

const ops = {
  goto: ({ url }) => page.goto(url, { waitUntil: "load" }).then(() => null),
  wait: ({ expression, timeout }) =>
    page.waitForFunction(expression, undefined, { timeout: timeout ?? 30000, polling: 50 }).then(() => null),
  eval: ({ expression }) => page.evaluate(expression),
  click: ({ selector, timeout }) => page.click(selector, { timeout: timeout ?? 10000 }).then(() => null),
  press: ({ key }) => page.keyboard.press(key).then(() => null),
  keydown: ({ key }) => page.keyboard.down(key).then(() => null),
  keyup: ({ key }) => page.keyboard.up(key).then(() => null),
  ax: ({ selector }) => accessible(selector),
  viewport: ({ width, height }) => page.setViewportSize({ width, height }).then(() => null),
  screenshot: ({ path, fullPage }) => page.screenshot({ path, fullPage: fullPage ?? false }).then(() => path),
  errors: () => Promise.resolve(problems.slice()),
  // The page's clock `seconds` off the real one from now on (a laptop whose clock drifted).
  skew: ({ seconds }) => page.clock.install({ time: Date.now() + seconds * 1000 }).then(() => null),
  fastforward: ({ ms }) => page.clock.fastForward(ms).then(() => null),
  // A hung call's route is left unhandled for good (unrouting it would let it through).
  hang: ({ method }) => {
    hanging.add(method);
    return page.route(`**/${method}`, (route) => (hanging.has(method) ? undefined : route.fallback())).then(() => null);
  },
  unhang: ({ method }) => Promise.resolve(hanging.delete(method)).then(() => null),
  hold: ({ method }) => {
    holding.set(method, []);
    return page
      .route(`**/${method}`, (route) => (holding.has(method) ? holding.get(method).push(route) : route.fallback()))
      .then(() => null);
  },
  release: ({ method }) => {
    const held = holding.get(method) ?? [];
    holding.delete(method);
    return Promise.all(held.map((route) => route.fallback())).then(() => null);
  },
  unimplemented: ({ method }) =>
    page
      .route(`**/${method}`, (route) =>
        route.fulfill({
          status: 200,
          headers: {
            "access-control-allow-origin": route.request().headers()["origin"] ?? "*",
            "access-control-expose-headers": "grpc-status,grpc-message",
            "content-type": "application/grpc-web+proto",
            "grpc-status": "12",
            "grpc-message": "not offered here",
          },
          body: "",
        }),
      )
      .then(() => null),
  replylost: ({ method, delayMs }) =>
    page
      .route(`**/${method}`, async (route) => {
        await route.fetch(); // the server has the call and answers it
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        await route.abort("connectionreset");
      })
      .then(() => null),
  calls: ({ method }) =>
    Promise.resolve([...calls].filter(([path]) => path.endsWith(`/${method}`)).reduce((sum, [, n]) => sum + n, 0)),
  serve: ({ pattern, path }) => page.route(pattern, (route) => route.fulfill({ path })).then(() => null),
  close: () => browser.close().then(() => null),
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  let answer;
  try {
    const op = ops[command.op];
    if (!op) throw new Error(`unknown op ${command.op}`);
    answer = { id: command.id, ok: true, value: (await op(command)) ?? null };
  } catch (error) {
    answer = { id: command.id, ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (command.op === "close") break;
}
await browser.close().catch(() => {});
// stdin may still be open (the tests close it after "close"): do not wait for it.
process.exit(0);
