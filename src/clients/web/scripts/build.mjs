// Builds the dashboard bundle that the Python package ships, and the Node client test.
//
//   node scripts/build.mjs                 dashboard -> src/clients/python/runstream/dashboard/static
//   node scripts/build.mjs --outdir DIR    dashboard -> DIR (the reproducibility test builds here)
//   node scripts/build.mjs --node-test     test/node-client.test.ts -> dist/node-client.test.mjs
//
// The bundle is committed so that `runstream dashboard` works from a Python-only install
// (no Node at run time); the output is deterministic, and tests/contract/test_web.py
// fails when rebuilding it changes a byte.
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const shipped = resolve(web, "../python/runstream/dashboard/static");
const { values } = parseArgs({
  options: { outdir: { type: "string" }, "node-test": { type: "boolean" } },
});

const BANNER =
  "/* Runstream dashboard. Built by src/clients/web/scripts/build.mjs from src/clients/web/src;" +
  " do not edit. */";

async function buildDashboard(outdir) {
  await mkdir(outdir, { recursive: true });
  const common = {
    bundle: true,
    minify: true,
    legalComments: "eof",
    charset: "utf8",
    logLevel: "warning",
    banner: { js: BANNER, css: BANNER },
  };
  await esbuild.build({
    ...common,
    entryPoints: [join(web, "src/dashboard/main.ts")],
    outfile: join(outdir, "app.js"),
    format: "iife",
    platform: "browser",
    // Evergreen browsers: fetch streams, BigInt and AbortSignal are all the client needs.
    target: ["chrome110", "firefox115", "safari16"],
  });
  await esbuild.build({
    ...common,
    entryPoints: [join(web, "src/dashboard/styles.css")],
    outfile: join(outdir, "app.css"),
    target: ["chrome110", "firefox115", "safari16"],
  });
  await copyFile(join(web, "src/dashboard/index.html"), join(outdir, "index.html"));
  await copyFile(join(web, "src/dashboard/favicon.svg"), join(outdir, "favicon.svg"));
  const js = await readFile(join(outdir, "app.js"));
  const css = await readFile(join(outdir, "app.css"));
  console.log(`dashboard: ${outdir} (app.js ${js.length} B, app.css ${css.length} B)`);
}

async function buildNodeTest() {
  const outfile = join(web, "dist/node-client.test.mjs");
  await esbuild.build({
    entryPoints: [join(web, "test/node-client.test.ts")],
    outfile,
    bundle: true,
    // The test imports the generated code and runs it on the installed runtime packages.
    packages: "external",
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "warning",
  });
  await writeFile(join(web, "dist/package.json"), '{"type": "module"}\n');
  console.log(`node test: ${outfile}`);
}

if (values["node-test"]) {
  await buildNodeTest();
} else {
  await buildDashboard(values.outdir ? resolve(values.outdir) : shipped);
}
