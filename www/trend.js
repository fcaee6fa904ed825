// A property's history as an SVG trend: the min-max band of each bucket, the
// average as a line, and the model's limits as dashed lines.
import { get, q, twinPath } from "./api.js";
import { fmtValue } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const STEPS = [[1e3, "1s"], [5e3, "5s"], [1e4, "10s"], [3e4, "30s"], [6e4, "1m"],
  [3e5, "5m"], [6e5, "10m"], [18e5, "30m"], [36e5, "1h"], [108e5, "3h"], [216e5, "6h"],
  [864e5, "1d"]];
const BUCKETS = 150;         // about one bucket per 5 px on a laptop screen

// The smallest step that keeps the buckets of `range` ms under BUCKETS.
export function stepFor(range) {
  for (const [ms, name] of STEPS) if (range / ms <= BUCKETS) return { ms, name };
  return { ms: STEPS[STEPS.length - 1][0], name: STEPS[STEPS.length - 1][1] };
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export async function loadTrend(twin, prop, range) {
  const to = Date.now();
  const step = stepFor(range);
  const path = q(twinPath(twin) + "/history", { property: prop, from: to - range, to,
    step: step.name });
  return { buckets: await get(path), from: to - range, to };
}

// Draws into `box`; `limits` is {minimum, maximum} from the model (either may be absent).
export function drawTrend(box, data, limits, label) {
  // Drawn at the box's own width, so that text keeps its size on a phone.
  const W = Math.max(280, Math.round(box.clientWidth || 900)), H = 260, L = 56, R = 12, T = 12, B = 26;
  const pts = data.buckets.filter((b) => typeof b.avg === "number");
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    "data-buckets": pts.length });
  box.replaceChildren(s);
  box.setAttribute("aria-label", `trend of ${label}: ${pts.length} buckets`);
  if (pts.length === 0) {
    s.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no values in this range"));
    return;
  }
  let lo = Math.min(...pts.map((b) => b.min)), hi = Math.max(...pts.map((b) => b.max));
  const lims = [];
  for (const k of ["minimum", "maximum"])
    if (limits && typeof limits[k] === "number") lims.push([k, limits[k]]);
  // Show a limit when it is near the values: a far one would flatten the trend.
  const span0 = hi - lo || Math.abs(hi) || 1;
  const shown = lims.filter(([, v]) => v >= lo - span0 && v <= hi + span0);
  for (const [, v] of shown) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const pad = (hi - lo) * 0.05 || 1;
  lo -= pad; hi += pad;
  const x = (t) => L + ((t - data.from) / (data.to - data.from)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);

  s.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    s.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, fmtValue(v)));
  }
  const ticks = W < 500 ? 2 : 4;
  for (let i = 0; i <= ticks; i++) {
    const t = data.from + ((data.to - data.from) * i) / ticks;
    const d = new Date(t);
    const txt = d.toTimeString().slice(0, 5);
    s.append(svg("text", { x: x(t), y: H - 8,
      "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" }, txt));
  }
  const top = pts.map((b) => `${x(b.ts).toFixed(1)},${y(b.max).toFixed(1)}`);
  const bottom = pts.slice().reverse().map((b) => `${x(b.ts).toFixed(1)},${y(b.min).toFixed(1)}`);
  s.append(svg("polygon", { class: "band", points: top.concat(bottom).join(" ") }));
  s.append(svg("polyline", { class: "avg",
    points: pts.map((b) => `${x(b.ts).toFixed(1)},${y(b.avg).toFixed(1)}`).join(" ") }));
  for (const [k, v] of shown) {
    s.append(svg("line", { class: "limit", "data-limit": k, x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    s.append(svg("text", { class: "limit-label", x: W - R - 4, y: y(v) - 4, "text-anchor": "end" },
      `${k === "maximum" ? "max" : "min"} ${fmtValue(v)}`));
  }
}
