// A few DOM helpers: element creation, keyed list reconciliation and inline icons. The
// dashboard is small enough that a framework would weigh more than the app itself.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** Creates an element: h("div", { class: "card", onclick: fn }, "text", child). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Sets attributes; `on*` keys add listeners, false/null/undefined remove the attribute. */
export function setAttrs(el: Element, attrs: Attrs): void {
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === false || value === null || value === undefined) {
      el.removeAttribute(key);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

export function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Sets text only when it changed, so unchanged nodes are not touched (and not repainted). */
export function text(el: Element, value: string): void {
  if (el.textContent !== value) el.textContent = value;
}

/** Sets an attribute only when it changed. */
export function attr(el: Element, name: string, value: string): void {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** An element found by selector inside a root; throws when the template lacks it. */
export function $(root: ParentNode, selector: string): HTMLElement {
  const el = root.querySelector<HTMLElement>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/**
 * Reconciles a container's children with a list of items, by key: creates missing elements,
 * updates every element, removes those whose key disappeared, and keeps the list's order.
 * Elements are reused, so CSS transitions (progress bars) animate instead of restarting.
 */
export function reconcile<T>(
  container: HTMLElement,
  items: readonly T[],
  key: (item: T) => string,
  create: (item: T) => HTMLElement,
  update: (el: HTMLElement, item: T) => void,
): void {
  const existing = new Map<string, HTMLElement>();
  for (const child of Array.from(container.children) as HTMLElement[]) {
    const k = child.dataset.key;
    if (k !== undefined) existing.set(k, child);
  }
  let cursor: Element | null = container.firstElementChild;
  for (const item of items) {
    const k = key(item);
    let el = existing.get(k);
    if (el) {
      existing.delete(k);
    } else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    if (el !== cursor) container.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const stale of existing.values()) stale.remove();
}

const ICONS: Record<string, string> = {
  check: '<path d="M4 10.5l4 4 8-9" />',
  x: '<path d="M5 5l10 10M15 5L5 15" />',
  skip: '<path d="M5 5l6 5-6 5zM14 5v10" />',
  dot: '<circle cx="10" cy="10" r="3.5" fill="currentColor" stroke="none" />',
  play: '<path d="M7 5l8 5-8 5z" />',
  flag: '<path d="M5 17V3M5 4h9l-2 3.5 2 3.5H5" />',
  alert: '<path d="M10 3l8 14H2zM10 8v4M10 14.5v.5" />',
  bolt: '<path d="M11 2L4 11h5l-1 7 7-9h-5z" />',
  file: '<path d="M6 2h6l4 4v12H6zM12 2v4h4" />',
  layers: '<path d="M10 3l8 4-8 4-8-4zM2 11l8 4 8-4" />',
  user: '<circle cx="10" cy="7" r="3.5" /><path d="M3 18c1-4 4-5.5 7-5.5s6 1.5 7 5.5" />',
  heart: '<path d="M10 17s-7-4.5-7-9a4 4 0 017-2.5A4 4 0 0117 8c0 4.5-7 9-7 9z" />',
  question: '<circle cx="10" cy="10" r="8" /><path d="M7.5 7.5a2.5 2.5 0 115 .5c0 1.5-2.5 2-2.5 3.5M10 14.5v.5" />',
  spark: '<path d="M10 2v4M10 14v4M2 10h4M14 10h4M4.5 4.5l2.5 2.5M13 13l2.5 2.5M4.5 15.5L7 13M13 7l2.5-2.5" />',
  eye: '<path d="M1.5 10S4.5 4 10 4s8.5 6 8.5 6-3 6-8.5 6-8.5-6-8.5-6z" /><circle cx="10" cy="10" r="2.5" />',
  clock: '<circle cx="10" cy="10" r="8" /><path d="M10 5v5l3 2" />',
  trophy: '<path d="M6 3h8v5a4 4 0 01-8 0zM6 5H3v1a3 3 0 003 3M14 5h3v1a3 3 0 01-3 3M10 12v3M7 17h6" />',
  cpu: '<rect x="5" y="5" width="10" height="10" rx="1.5" /><path d="M8 2v3M12 2v3M8 15v3M12 15v3M2 8h3M2 12h3M15 8h3M15 12h3" />',
};

/** An inline SVG icon (stroke drawn in currentColor). */
export function icon(name: keyof typeof ICONS | string, cls = ""): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("class", `icon ${cls}`.trim());
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = ICONS[name] ?? ICONS.dot;
  return svg;
}
