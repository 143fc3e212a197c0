"""What the dashboard writes for people, from its pure functions, in Node rather than a browser.

src/clients/web/test/dashboard-format.test.ts pins durations, "ago" times, counts, money,
percents and metric values (format.ts), the fields line the feed gives an event of a kind it
has no case for (fields.ts), and the name and token subject a page acts as (who.ts). No
browser test read most of them: a duration of 299.6 s reading "4 m 59 s", or a map's entries
out of order, passed every test. This test bundles it with esbuild and runs it with node's
test runner in UTC, so the clock it reads is the same on every machine.
"""

from __future__ import annotations

import json
import re

from .web_support import WEB, require_node_packages, run_node

TESTS = (
    "durations read in the unit that suits them, rounded once",
    "timestamps and durations turn into milliseconds",
    "how long ago reads in the unit that suits it, rounded down",
    "counts are grouped below ten thousand and shortened above",
    "money keeps cents, and four places under a cent so a cost is never $0.00",
    "metrics are labelled and valued by what their names say",
    "JSON values read as text, keys as labels",
    "enum names, initials, hues and percents",
    "an event's fields read in field number order, unset ones left out",
    "six fields are shown, then how many more; lists, maps and structs show three",
    "nested messages open two deep and long text is cut at 80 characters",
    "a name is kept clean, and a page with a token acts as its subject",
)


async def test_the_dashboards_text_for_durations_counts_money_fields_and_names() -> None:
    require_node_packages()
    outfile = WEB / "dist" / "dashboard-format.test.mjs"
    options = {
        "entryPoints": [str(WEB / "test" / "dashboard-format.test.ts")],
        "outfile": str(outfile),
        "bundle": True,
        "packages": "external",  # run on the installed @bufbuild/protobuf
        "format": "esm",
        "platform": "node",
        "target": "node20",
        "logLevel": "warning",
    }
    build = f"const esbuild = await import('esbuild'); await esbuild.build({json.dumps(options)});"
    await run_node("--input-type=module", "-e", build)
    output = await run_node("--test", "--test-reporter=spec", str(outfile), env={"TZ": "UTC"})
    # A runner that found no tests also exits 0: require every one that exists.
    assert re.search(rf"\bpass {len(TESTS)}\b", output), output
    assert re.search(r"\bfail 0\b", output), output
    for name in TESTS:
        assert name in output, output
