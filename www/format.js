// How values, times and ages read on the page.

export function fmtValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(2) : v.toPrecision(4);
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAge(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h";
  return Math.floor(s / 86400) + " d";
}

// Units as DTDL names them, as people write them.
const UNITS = {
  degreeCelsius: "°C", degreeFahrenheit: "°F", kelvin: "K", ampere: "A", volt: "V",
  watt: "W", kilowatt: "kW", revolutionPerMinute: "rpm", millimetrePerSecond: "mm/s",
  cubicMetrePerHour: "m³/h", bar: "bar", pascal: "Pa", kilopascal: "kPa", percent: "%",
  litrePerSecond: "l/s", hertz: "Hz", second: "s", metre: "m", millimetre: "mm",
};
export const fmtUnit = (u) => (u ? (Object.hasOwn(UNITS, u) ? UNITS[u] : u) : "");

// A property of a document from twind, never one of Object's own (a twin may
// well report "constructor" or "__proto__").
export const own = (o, k) => (o && Object.hasOwn(o, k) ? o[k] : undefined);

// Builds an element: el("td", {class: "num"}, "text", child, ...).
export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

export const STATUS_RANK = { online: 0, stale: 1, offline: 2 };
export const SEVERITY_RANK = { critical: 0, major: 1, warning: 2, info: 3 };

export function statusMark(status) {
  return el("span", { class: "mark st-" + status, "data-status": status }, status);
}
