// The run's metric tiles: each metric's latest value, its change and a sparkline of its last
// values, the most looked-for first, and the run's own artifacts count.
import { $, attr, h, reconcile, text } from "../dom";
import { compact, metricLabel, metricValue } from "../format";
import type { RunSession } from "../session";

const PREFERRED_METRICS = ["impressions", "clicks", "ctr", "conversions", "tokens", "cost_usd", "assets"];
const MAX_TILES = 8;
/** The label of the run's own artifacts tile, and what it counts. */
const ARTIFACTS_LABEL = "Artifacts produced";
const ARTIFACTS_TITLE = "Artifacts the run reported (ArtifactProduced events and completed steps' artifacts)";

/** A metric tile, or one of the run's own (`summary`), keyed apart from every metric. */
interface Tile {
  key: string;
  summary?: string;
  /** The metric's name, as its producer gave it ("" for the run's own tiles). */
  name: string;
  label: string;
  value: string;
  change: string;
  history: number[];
}

export class MetricTiles {
  private history = new Map<string, number[]>();
  private lastSeq = -1;

  constructor(
    private readonly container: HTMLElement,
    private readonly session: RunSession,
  ) {}

  render(): void {
    const { model } = this.session;
    const values = model.metrics();
    if (model.lastSeq !== this.lastSeq) {
      this.lastSeq = model.lastSeq;
      for (const [name, value] of values) {
        const history = this.history.get(name) ?? [];
        if (history[history.length - 1] !== value) history.push(value);
        if (history.length > 24) history.shift();
        this.history.set(name, history);
      }
    }
    const run = model.snapshot;
    const names = [...values.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, MAX_TILES);
    // The run's own tiles (the artifacts count) are keyed apart from its metrics, whatever
    // the metrics are named: a metric named "artifacts" once shared the Artifacts tile's key,
    // and every render added two more tiles.
    const builtIn: Tile[] = [];
    if (run && !values.has("assets") && run.artifactsSummary && run.artifactsSummary.total > 0) {
      builtIn.push({ key: "summary:artifacts", summary: "artifacts", name: "", label: ARTIFACTS_LABEL, value: String(run.artifactsSummary.total), change: "", history: [] });
    }
    const taken = new Set(builtIn.map((t) => t.label.toLowerCase()));
    const tiles: Tile[] = names.map((name) => {
      // A metric whose label would read like one of the run's own tiles goes by the name
      // its producer gave it.
      const label = metricLabel(name);
      return {
        key: `metric:${name}`,
        name,
        label: taken.has(label.toLowerCase()) ? name : label,
        value: metricWithUnit(name, values.get(name) ?? 0, model.metricUnit(name)),
        change: changeText(name, model.metricChange(name), model.metricUnit(name)),
        history: this.history.get(name) ?? [],
      };
    });
    tiles.push(...builtIn);
    const container = this.container;
    container.hidden = tiles.length === 0;
    reconcile(
      container,
      tiles,
      (t) => t.key,
      (t) =>
        h(
          "div",
          { class: "tile", "data-metric": t.summary ? null : t.name, "data-summary": t.summary ?? null, title: t.summary ? ARTIFACTS_TITLE : `Metric “${t.name}”` },
          h("div", { class: "tile-label" }),
          h("div", { class: "tile-value" }),
          h("div", { class: "tile-change" }),
          sparkline(),
        ),
      (el, t) => {
        text($(el, ".tile-label"), t.label);
        text($(el, ".tile-value"), t.value);
        const change = $(el, ".tile-change");
        text(change, t.change);
        attr(change, "data-sign", t.change.startsWith("−") ? "down" : t.change ? "up" : "");
        drawSparkline(el.querySelector("svg") as SVGSVGElement, t.history);
      },
    );
  }
}

/** "5.0 %", "1,200 USD", or the value as its name suggests when it has no unit. */
function metricWithUnit(name: string, value: number, unit: string): string {
  if (!unit) return metricValue(name, value);
  if (unit === "%") return `${value.toFixed(1)} %`;
  return `${compact(value)} ${unit}`;
}

/** "+500", "−0.5 %", "+0.02%" for a rate, or "" for a metric reported once. */
function changeText(name: string, change: number | undefined, unit: string): string {
  if (change === undefined || change === 0) return "";
  const sign = change > 0 ? "+" : "−";
  const size = Math.abs(change);
  if (unit === "%") return `${sign}${size.toFixed(1)} %`;
  if (unit) return `${sign}${Number.isInteger(size) ? compact(size) : size.toFixed(2)} ${unit}`;
  return `${sign}${metricValue(name, size)}`;
}

function rank(name: string): number {
  const i = PREFERRED_METRICS.indexOf(name);
  return i < 0 ? PREFERRED_METRICS.length : i;
}

function sparkline(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.innerHTML = '<polyline fill="none" points="" />';
  return svg;
}

function drawSparkline(svg: SVGSVGElement, values: number[]): void {
  const line = svg.firstElementChild as SVGPolylineElement;
  if (values.length < 2) {
    line.setAttribute("points", "");
    return;
  }
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  const points = values.map((v, i) => `${((i / (values.length - 1)) * 100).toFixed(1)},${(22 - ((v - min) / span) * 20).toFixed(1)}`).join(" ");
  if (line.getAttribute("points") !== points) line.setAttribute("points", points);
}
