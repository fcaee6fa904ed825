// A property's history as an SVG trend: the min-max band of each bucket, the
// average as a line, the model's limits as dashed lines, and the forecast:
// the trend of the range's last quarter projected a quarter ahead, with its
// 95 % interval, from GET .../forecast (the same fit a rule's forecast() reads).
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

// A quarter of the range: long enough to smooth the noise, short enough to
// follow a bend (and at least the forecast's smallest window, 1 s).
export const forecastSpan = (range) => Math.max(1, Math.round(range / 4000)) + "s";

export async function loadTrend(twin, prop, range) {
  const to = Date.now();
  const step = stepFor(range);
  const path = q(twinPath(twin) + "/history", { property: prop, from: to - range, to,
    step: step.name });
  const span = forecastSpan(range);
  // A trend without its forecast is still a trend: a refusal is said, not drawn.
  const fc = get(q(twinPath(twin) + "/forecast", { property: prop, window: span, horizon: span }))
    .catch((e) => ({ error: e.message || "refused" }));
  const [buckets, forecast] = await Promise.all([get(path), fc]);
  return { buckets, forecast, from: to - range, to };
}

const num = (v) => typeof v === "number" && Number.isFinite(v);

// Whether twind could fit a line whose newest reading is in the range. A
// device clock may run ahead of the browser's (twind takes readings up to
// [ingest] max_future ahead): a newest reading up to a horizon past now counts.
function usable(fc, from, to) {
  return fc && !fc.error && num(fc.slope_per_s) && num(fc.fitted) && num(fc.projected) &&
    num(fc.ts) && num(fc.horizon_s) && fc.horizon_s >= 0 && fc.ts >= from &&
    fc.ts <= to + Math.max(fc.horizon_s * 1000, 5000);
}

function fmtSpan(s) {
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
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
  const fc = usable(data.forecast, data.from, data.to) ? data.forecast : null;
  const end = fc ? Math.max(data.to, fc.ts + fc.horizon_s * 1000) : data.to;
  const lims = [];
  for (const k of ["minimum", "maximum"])
    if (limits && typeof limits[k] === "number") lims.push([k, limits[k]]);
  const span0 = hi - lo || Math.abs(hi) || 1;
  // The projection widens the scale, as far as one span out.
  const fcVals = fc ? [fc.fitted, fc.projected].concat(fc.interval &&
    typeof fc.interval.low === "number" ? [fc.interval.low, fc.interval.high] : []) : [];
  const lo0 = lo, hi0 = hi;
  for (const v of fcVals) {
    lo = Math.min(lo, Math.max(v, lo0 - span0));
    hi = Math.max(hi, Math.min(v, hi0 + span0));
  }
  // A limit is shown when it is near the values (a far one would flatten the
  // trend), and always when the projection reaches it within the horizon.
  const aimed = fc && typeof fc.time_to_limit_s === "number" &&
    fc.time_to_limit_s <= fc.horizon_s ? fc.limit_source : null;
  const shown = lims.filter(([k, v]) => k === aimed || (v >= lo - span0 && v <= hi + span0));
  for (const [, v] of shown) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const pad = (hi - lo) * 0.05 || 1;
  lo -= pad; hi += pad;
  const x = (t) => L + ((t - data.from) / (end - data.from)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);

  s.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    s.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, fmtValue(v)));
  }
  const ticks = W < 500 ? 2 : 4;
  for (let i = 0; i <= ticks; i++) {
    const t = data.from + ((end - data.from) * i) / ticks;
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
  let said = "";
  if (fc) said = drawForecast(s, fc, x, y, { T, B, H, W, R, now: data.to });
  else if (data.forecast && data.forecast.error) {
    said = "no forecast: " + data.forecast.error;
    s.append(svg("text", { class: "forecast-label", x: L + 4, y: T + 28 }, said));
  }
  if (said) box.setAttribute("aria-label", `${box.getAttribute("aria-label")}; ${said}`);
  for (const [k, v] of shown) {
    s.append(svg("line", { class: "limit", "data-limit": k, x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    s.append(svg("text", { class: "limit-label", x: W - R - 4, y: y(v) - 4, "text-anchor": "end" },
      `${k === "maximum" ? "max" : "min"} ${fmtValue(v)}`));
  }
}

let clips = 0;     // each drawing its own clip id, unique in the document

// The fitted line from the newest reading to the horizon, the interval at the
// horizon as a fan, "now" (the browser's), and the time to the limit when
// twind names one, counted from now: twind counts from the newest reading,
// which for a twin gone quiet is in the past.
// Clipped to the plot: a steep projection leaves it rather than squash it.
function drawForecast(s, fc, x, y, box) {
  const { T, B, H, W, R, now } = box;
  const t1 = fc.ts + fc.horizon_s * 1000;
  const id = `trend-plot-${++clips}`;
  const clip = svg("clipPath", { id });
  clip.append(svg("rect", { x: 0, y: T, width: W - R, height: H - B - T }));
  const g = svg("g", { class: "forecast", "clip-path": `url(#${id})`,
    "data-slope": fc.slope_per_s, "data-horizon": fc.horizon_s,
    "data-time-to-limit": fc.time_to_limit_s ?? "" });
  const defs = svg("defs", {});
  defs.append(clip);
  s.append(defs, g);
  s.append(svg("line", { class: "now", x1: x(now), x2: x(now), y1: T, y2: H - B }));
  if (fc.interval && num(fc.interval.low) && num(fc.interval.high))
    g.append(svg("polygon", { class: "forecast-band", points: [[fc.ts, fc.fitted],
      [t1, fc.interval.high], [t1, fc.interval.low]]
      .map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
  g.append(svg("line", { class: "forecast-line", x1: x(fc.ts), y1: y(fc.fitted),
    x2: x(t1), y2: y(fc.projected) }));
  let words;
  if (num(fc.time_to_limit_s) && num(fc.limit_ts)) {
    const name = fc.limit_source === "minimum" ? "min" : fc.limit_source === "maximum" ? "max" :
      "limit";
    const left = (fc.limit_ts - now) / 1000;
    words = left > 0 ? `${name} ${fmtValue(fc.limit)} in ${fmtSpan(left)}`
      : `${name} ${fmtValue(fc.limit)} reached by the trend at ` +
        new Date(fc.limit_ts).toTimeString().slice(0, 8);
  } else {
    words = `trend ${fc.slope_per_s >= 0 ? "+" : ""}${fmtValue(fc.slope_per_s * 60)}/min`;
  }
  const right = x(now) > W * 0.7;
  s.append(svg("text", { class: "forecast-label", x: x(now) + (right ? -4 : 4), y: T + 28,
    "text-anchor": right ? "end" : "start" }, words));
  return words;
}
