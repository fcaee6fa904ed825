// The alarm summary (ISA-18.2): active and unacknowledged alarms first, by
// severity; acknowledge and shelve from here; filter by twin; export as CSV.
import { api } from "./api.js";
import { el, fmtTime, fmtValue, SEVERITY_RANK } from "./format.js";
import { alertShelved, may, plant } from "./plant.js";

let view = null;
const SHELVE = [["15m", "15 min"], ["1h", "1 h"], ["4h", "4 h"], ["8h", "8 h"]];

function stateOf(a) {
  if (alertShelved(a)) return "shelved";
  return (a.active ? "active" : "cleared") + (a.acknowledged ? ", acknowledged" : ", unacknowledged");
}

// Active before cleared, unacknowledged before acknowledged, then severity, then newest.
function order(a, b) {
  const rank = (x) => (x.active ? 0 : 2) + (x.acknowledged ? 1 : 0);
  return rank(a) - rank(b) || (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
    b.raised_ts - a.raised_ts;
}

export function rows() {
  const twin = view.root.querySelector("#alarm-twin").value;
  const cleared = view.root.querySelector("#alarm-cleared").checked;
  const shelved = view.root.querySelector("#alarm-shelved").checked;
  return [...plant.alerts.values()].filter((a) =>
    (!twin || a.twin === twin) && (cleared || a.active) && (shelved || !alertShelved(a)))
    .sort(order);
}

function say(text, bad) {
  const m = view.root.querySelector("#alarm-msg");
  m.textContent = text;
  m.className = "msg" + (bad ? " bad" : "");
}

async function act(a, what, body) {
  try {
    const r = await api("POST", `/api/v1/alerts/${a.id}/${what}`, body);
    plant.alerts.set(a.id, r.doc);
    if (!r.doc.active && r.doc.acknowledged) plant.alerts.delete(a.id);
    say(what === "ack" ? `Acknowledged: ${a.twin} ${a.rule}.`
      : `Shelved until ${fmtTime(r.doc.shelved_until_ts)}: ${a.twin} ${a.rule}.`);
    render();
  } catch (err) {
    say(`Not done (${err.status || "no answer"}): ${err.message}`, true);
  }
}

function row(a) {
  const pick = el("select", { "aria-label": `shelve ${a.twin} ${a.rule} for`, class: "shelve-for" },
    ...SHELVE.map(([v, t]) => el("option", { value: v }, t)));
  const cls = [a.acknowledged ? "" : "unacked", a.active ? "" : "cleared"];
  return el("tr", { "data-alert": a.id, "data-severity": a.severity, class: cls.join(" ").trim() || null },
    el("td", { class: "sev sev-" + a.severity }, a.severity),
    el("td", { class: "state" }, stateOf(a)),
    el("td", {}, el("a", { href: "#/twin/" + encodeURIComponent(a.twin) }, a.twin)),
    el("td", {}, el("div", {}, a.rule), a.message && a.message !== a.rule
      ? el("div", { class: "hint" }, a.message) : null),
    el("td", { class: "num" }, fmtValue(a.value)),
    el("td", {}, fmtTime(a.raised_ts)),
    el("td", {}, a.acknowledged
      ? `acknowledged ${fmtTime(a.acked_ts)}` + (a.acked_by ? ` by ${a.acked_by}` : "")
      : may("operate") ? el("button", { type: "button", class: "ack", onclick: () => act(a, "ack", {}) },
        "Acknowledge") : "unacknowledged"),
    el("td", {}, a.active && may("operate") ? [pick, " ", el("button", { type: "button",
      class: "shelve", onclick: () => act(a, "shelve", { for: pick.value }) }, "Shelve")]
      .reduce((td, k) => (td.append(k), td), el("span")) : ""));
}

function twinOptions() {
  const sel = view.root.querySelector("#alarm-twin");
  const want = sel.value || view.twin || "";
  const ids = [...plant.twins.keys()].sort();
  if (sel.options.length - 1 !== ids.length) {
    sel.replaceChildren(el("option", { value: "" }, "all twins"),
      ...ids.map((id) => el("option", { value: id }, id)));
  }
  sel.value = ids.includes(want) ? want : "";
}

// Rows are kept while their alarm is unchanged, so a shelve duration being
// picked is not reset by an event about another alarm.
export function render() {
  if (!view) return;
  twinOptions();
  const list = rows();
  const kept = new Map();
  const made = list.map((a) => {
    const sig = JSON.stringify(a) + stateOf(a);
    const old = view.rows.get(a.id);
    const r = old && old.sig === sig ? old : { sig, tr: row(a) };
    kept.set(a.id, r);
    return r.tr;
  });
  view.rows = kept;
  view.root.querySelector("#alarm-table tbody").replaceChildren(...made);
  view.root.querySelector("#alarm-none").hidden = list.length > 0;
}

function csvCell(v) {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  // A cell starting = + - @ or a tab runs as a formula in a spreadsheet: only a plain number may.
  const number = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(s);
  const safe = /^[=+\-@\t\r]/.test(s) && !number ? "'" + s : s;
  return /[",\n\r]/.test(safe) ? '"' + safe.replace(/"/g, '""') + '"' : safe;
}

export function csv(list) {
  const head = ["id", "twin", "rule", "severity", "state", "message", "value", "raised",
    "acknowledged", "cleared", "shelved_until"];
  const lines = [head.join(",")];
  const iso = (ms) => (ms ? new Date(ms).toISOString() : "");
  for (const a of list)
    lines.push([a.id, a.twin, a.rule, a.severity, stateOf(a), a.message, a.value,
      iso(a.raised_ts), iso(a.acked_ts), iso(a.cleared_ts), iso(a.shelved_until_ts)]
      .map(csvCell).join(","));
  return lines.join("\r\n") + "\r\n";
}

function download() {
  const blob = new Blob([csv(rows())], { type: "text/csv" });
  const a = el("a", { href: URL.createObjectURL(blob),
    download: `alarms-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function mount(main, twin) {
  const root = document.getElementById("tpl-alarms").content.firstElementChild.cloneNode(true);
  main.replaceChildren(root);
  view = { root, twin, timer: null, rows: new Map() };
  for (const id of ["#alarm-twin", "#alarm-cleared", "#alarm-shelved"])
    root.querySelector(id).addEventListener("change", render);
  root.querySelector("#alarm-csv").addEventListener("click", download);
  render();
  // A shelve ends with time alone: look again every few seconds.
  view.timer = setInterval(render, 5000);
}

export function unmount() {
  if (view) clearInterval(view.timer);
  view = null;
}
