// One twin: reported beside desired with convergence, writable properties set
// through PATCH desired with If-Match, its trend and its recent commands.
import { api, get, q, twinPath } from "./api.js";
import { el, fmtAge, fmtTime, fmtUnit, fmtValue, own } from "./format.js";
import { may, plant } from "./plant.js";
import { drawTrend, loadTrend } from "./trend.js";

let view = null;

function modelOf(doc) {
  return doc && doc.model ? plant.models.get(doc.model) : null;
}

function modelProp(doc, name) {
  const m = modelOf(doc);
  return m ? m.properties.find((p) => p.name === name) : null;
}

// 412 and 422 in words an operator can act on.
export function explain(err, prop) {
  if (err.status === 412)
    return `Not written: ${view.id} changed since this page showed it. ` +
      "The values above are current again; check them and set once more.";
  if (err.status === 422) return `Refused for ${prop}: ${err.message}`;
  if (err.status === 404) return `${view.id} is no longer known to twind.`;
  if (err.status === 0 || !err.status) return "twind cannot be reached: nothing was written.";
  return `Not written (${err.status} ${err.code}): ${err.message}`;
}

function say(text, bad) {
  const m = view.root.querySelector("#desired-msg");
  m.textContent = text;
  m.className = "msg" + (bad ? " bad" : "");
}

function parseInput(mp, raw) {
  if (mp && (mp.schema === "number" || mp.schema === "integer" || mp.schema === "double")) {
    if (raw.trim() === "" || !Number.isFinite(Number(raw))) return { bad: "a number" };
    return { value: Number(raw) };
  }
  if (mp && mp.schema === "boolean") {
    if (raw !== "true" && raw !== "false") return { bad: "true or false" };
    return { value: raw === "true" };
  }
  return { value: raw };
}

async function setDesired(prop, value) {
  const body = { [prop]: value };
  try {
    const r = await api("PATCH", twinPath(view.id) + "/desired", body,
      { "If-Match": `"${view.version}"` });
    view.doc = r.doc;
    view.version = r.doc.version;
    render();
    say(value === null ? `Desired ${prop} withdrawn.`
      : `Desired ${prop} = ${fmtValue(value)} sent; waiting for ${view.id} to report it.`);
  } catch (err) {
    say(explain(err, prop), true);
    if (err.status === 412) await refresh();
  }
}

function editor(mp) {
  const id = "set-" + mp.name;
  const input = mp.schema === "boolean"
    ? el("select", { id, class: "desired", "aria-label": "desired " + mp.name },
      el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"))
    : el("input", { id, class: "desired", "aria-label": "desired " + mp.name,
      inputmode: mp.schema === "string" ? null : "decimal",
      placeholder: mp.minimum !== undefined ? `${mp.minimum}…${mp.maximum}` : "" });
  const set = () => {
    const v = parseInput(mp, input.value);
    if (v.bad) return say(`${mp.name} takes ${v.bad}.`, true);
    setDesired(mp.name, v.value);
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") set(); });
  return el("td", {}, input, " ", el("button", { type: "button", class: "set", onclick: set }, "Set"),
    " ", el("button", { type: "button", class: "withdraw", hidden: true,
      onclick: () => setDesired(mp.name, null) }, "Withdraw"));
}

function convergence(d) {
  if (!d) return [];
  if (d.converged_ts) return ["converged " + fmtTime(d.converged_ts)];
  if (d.pending_since_ts) return [el("span", { class: "flag pending" },
    "pending " + fmtAge(d.pending_since_ts))];
  return [];
}

// A row per property, made once: later renders change its cells in place, so
// that an operator typing a value never loses the box under the cursor.
function makeRow(doc, name) {
  const mp = modelProp(doc, name);
  const cells = {
    value: el("td", { class: "num value" }), unit: el("td", {}), age: el("td", { class: "num age" }),
    marks: el("td", { class: "marks" }), desired: el("td", { class: "num desired-value" }),
    conv: el("td", { class: "convergence" }),
    edit: mp && mp.writable && may("operate") ? editor(mp) : el("td", {}),
  };
  const tr = el("tr", { "data-prop": name }, el("th", { scope: "row" }, name), cells.value,
    cells.unit, cells.age, cells.marks, cells.desired, cells.conv, cells.edit);
  return { tr, cells, mp };
}

function fillRow(doc, name, row) {
  const r = own(doc.reported, name);
  const d = own(doc.desired, name);
  const c = row.cells;
  const marks = [];
  if (r && r.stale) marks.push(el("span", { class: "flag stale" }, "stale"));
  if (r && r.out_of_range) marks.push(el("span", { class: "flag range" }, "out of range"));
  c.value.textContent = r ? fmtValue(r.value) : "";
  c.unit.textContent = fmtUnit((r && r.unit) || (row.mp && row.mp.unit));
  c.age.dataset.ts = r ? r.ts : "";
  c.age.textContent = r ? fmtAge(r.ts) : "";
  c.marks.replaceChildren(...marks);
  c.desired.textContent = d ? fmtValue(d.value) : "";
  c.conv.replaceChildren(...convergence(d),
    Object.hasOwn(doc.delta, name) ? el("span", { class: "flag pending" }, "delta") : "");
  const w = c.edit.querySelector("button.withdraw");
  if (w) w.hidden = !d || (!d.pending_since_ts && !Object.hasOwn(doc.delta, name));
}

function render() {
  const doc = view.doc;
  const root = view.root;
  root.querySelector("#twin-id").textContent = doc.id;
  const mark = root.querySelector("#twin-status");
  mark.textContent = doc.status;
  mark.className = "mark st-" + doc.status;
  mark.dataset.status = doc.status;
  const m = modelOf(doc);
  root.querySelector("#twin-meta").textContent = [
    m ? `${m.display_name || m.id}` : doc.model ? doc.model : "no model",
    doc.parent ? `in ${doc.parent}` : null,
    `version ${doc.version}`,
    doc.last_seen_ts ? `last seen ${fmtTime(doc.last_seen_ts)}` : "never seen",
  ].filter(Boolean).join(" · ");
  const names = new Set(Object.keys(doc.reported));
  if (m) for (const p of m.properties) if (p.writable) names.add(p.name);
  for (const n of Object.keys(doc.desired)) names.add(n);
  const sorted = [...names].sort();
  if (sorted.join("\n") !== view.names) {
    const rows = new Map();
    for (const n of sorted) rows.set(n, view.rows.get(n) || makeRow(doc, n));
    view.rows = rows;
    view.names = sorted.join("\n");
    root.querySelector("#values tbody").replaceChildren(...[...rows.values()].map((r) => r.tr));
  }
  for (const [n, r] of view.rows) fillRow(doc, n, r);
  const sel = root.querySelector("#trend-prop");
  const numeric = sorted.filter((n) => { const r = own(doc.reported, n); return r && typeof r.value === "number"; });
  if ([...sel.options].map((o) => o.value).join("\n") !== numeric.join("\n")) {
    const was = sel.value;
    sel.replaceChildren(...numeric.map((n) => el("option", { value: n }, n)));
    // A first look at a property the model bounds says most.
    const first = numeric.find((n) => { const mp = modelProp(doc, n); return mp && mp.maximum !== undefined; });
    sel.value = numeric.includes(was) ? was : first || numeric[0] || "";
  }
}

function renderCommands(list) {
  const body = view.root.querySelector("#commands tbody");
  body.replaceChildren(...list.slice(0, 10).map((c) => el("tr", { "data-command": c.id },
    el("td", {}, fmtTime(c.issued_ts)), el("td", {}, c.command),
    el("td", {}, c.params ? JSON.stringify(c.params) : ""),
    el("td", {}, c.rule ? "rule " + c.rule : c.issued_by ? c.issued_by : "operator"),
    el("td", { class: "status" }, c.status), el("td", {}, c.reason || ""))));
  view.root.querySelector("#commands-none").hidden = list.length > 0;
}

async function refresh() {
  const id = view.id;
  const r = await api("GET", twinPath(id));
  if (!view || view.id !== id) return;
  view.doc = r.doc;
  view.version = r.doc.version;
  render();
}

async function refreshCommands() {
  const id = view.id;
  const doc = await get(q("/api/v1/commands", { twin: id }));
  if (view && view.id === id) renderCommands(doc.commands);
}

async function refreshTrend() {
  const root = view.root;
  const prop = root.querySelector("#trend-prop").value;
  const range = Number(root.querySelector("#trend-range").value);
  if (!prop) {
    root.querySelector("#trend").replaceChildren(el("p", { class: "hint" }, "No numeric values."));
    return;
  }
  const v = view, seq = ++v.trendSeq;
  const data = await loadTrend(v.id, prop, range);
  // Only the newest answer is drawn: an older one (another property, range
  // or twin, or a slow forecast) must not replace it.
  if (view === v && seq === v.trendSeq) drawTrend(root.querySelector("#trend"), data,
    modelProp(v.doc, prop), prop);
}

export async function mount(main, id) {
  const root = document.getElementById("tpl-twin").content.firstElementChild.cloneNode(true);
  main.replaceChildren(root);
  view = { id, root, doc: null, version: 0, timers: [], rows: new Map(), names: null,
    trendSeq: 0 };
  root.querySelector("#twin-alarms").href = "#/alarms?twin=" + encodeURIComponent(id);
  try {
    await refresh();
  } catch (err) {
    root.replaceChildren(el("h1", {}, id), el("p", { class: "msg bad" },
      err.status === 404 ? `No twin called ${id}.` : `Cannot read ${id}: ${err.message}`));
    return;
  }
  root.querySelector("#trend-prop").addEventListener("change", () => refreshTrend());
  root.querySelector("#trend-range").addEventListener("change", () => refreshTrend());
  refreshCommands().catch(() => {});
  refreshTrend().catch(() => {});
  const v = view;
  // Ages move with the clock; stale marks and the trend are re-read from twind.
  v.timers.push(setInterval(() => {
    for (const td of root.querySelectorAll("td.age"))
      if (td.dataset.ts) td.textContent = fmtAge(Number(td.dataset.ts));
  }, 1000));
  v.timers.push(setInterval(() => { refresh().catch(() => {}); }, 5000));
  v.timers.push(setInterval(() => {
    if (Number(root.querySelector("#trend-range").value) <= 3600000) refreshTrend().catch(() => {});
  }, 10000));
}

export function unmount() {
  if (view) for (const t of view.timers) clearInterval(t);
  view = null;
}

let cmdTimer = null;
// Live: values merge in as they come; desired and commands are read again.
export function onEvent(type, ev) {
  if (!view || !view.doc || ev.twin !== view.id) return;
  if (type === "twin") {
    // Defined, not assigned: a property called __proto__ stays a property.
    for (const [k, v] of Object.entries(ev.reported))
      Object.defineProperty(view.doc.reported, k, { value: v, enumerable: true, writable: true,
        configurable: true });
    view.doc.version = ev.version;
    view.version = ev.version;
    view.doc.last_seen_ts = ev.last_seen_ts;
    render();
  } else if (type === "status") {
    view.doc.status = ev.status;
    render();
  } else if (type === "desired") {
    refresh().catch(() => {});
  } else if (type === "command") {
    cmdTimer = cmdTimer || setTimeout(() => { cmdTimer = null; refreshCommands().catch(() => {}); }, 200);
  }
}
