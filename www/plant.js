// The plant as the page knows it: twins and their alarms from the REST API,
// kept live by the event stream; and the tree that shows it (ISA-101 level 1).
import { get } from "./api.js";
import { el, statusMark, STATUS_RANK } from "./format.js";

// Who the page acts for: roles from /api/v1/whoami (all of them without tokens).
export const session = { name: null, roles: new Set(), tokens: false };
export const may = (role) => session.roles.has(role);

export const plant = {
  twins: new Map(),   // id -> {id, model, parent, status, last_seen_ts, version}
  alerts: new Map(),  // id -> alert: active, unacknowledged or shelved ones
  models: new Map(),  // id -> model, as /api/v1/models gives it
};

const listeners = new Set();
export const onChange = (fn) => listeners.add(fn);
export const offChange = (fn) => listeners.delete(fn);
function changed(what) {
  for (const fn of listeners) fn(what);
  scheduleTree();
}

export async function loadModels() {
  const doc = await get("/api/v1/models");
  plant.models = new Map(doc.models.map((m) => [m.id, m]));
}

export async function loadTwins() {
  const doc = await get("/api/v1/twins");
  plant.twins = new Map(doc.twins.map((t) => [t.id, t]));
  changed("twins");
}

// What an operator must see: active alarms and those still unacknowledged.
export async function loadAlerts() {
  const [act, unack] = await Promise.all([
    get("/api/v1/alerts?state=active"), get("/api/v1/alerts?state=unacknowledged")]);
  plant.alerts = new Map();
  for (const a of [...act.alerts, ...unack.alerts]) plant.alerts.set(a.id, a);
  changed("alerts");
}

export function alertShelved(a, now = Date.now()) {
  return a.shelved_until_ts !== null && a.shelved_until_ts > now;
}

// An alarm stays on the page while active or unacknowledged (ISA-18.2).
export function putAlert(a) {
  if (!a.active && a.acknowledged) plant.alerts.delete(a.id);
  else plant.alerts.set(a.id, a);
  changed("alerts");
}

let missing = null;
export function twinEvent(ev) {
  const t = plant.twins.get(ev.twin);
  if (!t) {
    // A twin appeared since the list was read: read it again, once.
    missing = missing || setTimeout(() => { missing = null; loadTwins().catch(() => {}); }, 300);
    return;
  }
  t.version = ev.version;
  t.last_seen_ts = ev.last_seen_ts;
  changed("twin:" + ev.twin);
}

export function statusEvent(ev) {
  const t = plant.twins.get(ev.twin);
  if (!t) return;
  t.status = ev.status;
  t.last_seen_ts = ev.last_seen_ts;
  changed("twin:" + ev.twin);
}

// Active, unshelved alarms per twin: what its count shows.
function ownCounts() {
  const n = new Map();
  const now = Date.now();
  for (const a of plant.alerts.values())
    if (a.active && !alertShelved(a, now)) n.set(a.twin, (n.get(a.twin) || 0) + 1);
  return n;
}

export function childrenOf() {
  const kids = new Map();
  const roots = [];
  for (const t of plant.twins.values()) {
    if (t.parent && plant.twins.has(t.parent)) {
      if (!kids.has(t.parent)) kids.set(t.parent, []);
      kids.get(t.parent).push(t);
    } else {
      roots.push(t);
    }
  }
  const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  roots.sort(byId);
  for (const list of kids.values()) list.sort(byId);
  return { roots, kids };
}

// The worst status and the alarm count of each twin's subtree.
function rollups(kids, counts) {
  const out = new Map();
  const visit = (t, depth) => {
    if (out.has(t.id)) return out.get(t.id);
    const r = { status: t.status, alerts: counts.get(t.id) || 0 };
    out.set(t.id, r);       // before the children: a cycle cannot loop
    if (depth < 64) {
      for (const c of kids.get(t.id) || []) {
        const cr = visit(c, depth + 1);
        if (STATUS_RANK[cr.status] > STATUS_RANK[r.status]) r.status = cr.status;
        r.alerts += cr.alerts;
      }
    }
    return r;
  };
  for (const t of plant.twins.values()) visit(t, 0);
  return out;
}

export let selected = null;
export function select(id) {
  selected = id;
  scheduleTree();
}

function node(t, kids, roll) {
  const r = roll.get(t.id);
  const link = el("a", { href: "#/twin/" + encodeURIComponent(t.id), "data-twin": t.id,
    "aria-current": selected === t.id ? "page" : null,
    title: `${t.id}: ${t.status}` + (r.status !== t.status ? `, below it: ${r.status}` : "") },
  el("span", { class: "name" }, t.id), statusMark(t.status),
  r.status !== t.status ? el("span", { class: "mark st-" + r.status, "data-rollup": r.status },
    "▾ " + r.status) : null,
  el("span", { class: "count" + (r.alerts > 0 ? " some" : ""), "data-count": r.alerts,
    "aria-label": r.alerts + " active alarms" }, r.alerts));
  const li = el("li", { role: "treeitem", "data-twin": t.id }, link);
  const list = kids.get(t.id);
  if (list) li.append(el("ul", { role: "group" }, ...list.map((c) => node(c, kids, roll))));
  return li;
}

let treeTimer = null;
function scheduleTree() {
  if (treeTimer === null) treeTimer = setTimeout(renderTree, 100);
}

export function renderTree() {
  treeTimer = null;
  const tree = document.getElementById("tree");
  const { roots, kids } = childrenOf();
  const counts = ownCounts();
  const roll = rollups(kids, counts);
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.twin : null;
  tree.replaceChildren(...roots.map((t) => node(t, kids, roll)));
  document.getElementById("tree-empty").hidden = plant.twins.size > 0;
  if (focused) {
    const again = tree.querySelector(`a[data-twin="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  let total = 0;
  for (const n of counts.values()) total += n;
  const badge = document.getElementById("alarm-count");
  badge.textContent = total;
  badge.className = "count" + (total > 0 ? " some" : "");
}
