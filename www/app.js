// The page's start: read the plant over REST, keep it live over the event
// stream, and show the view the address names (#/alarms, #/twin/{id}).
import { get } from "./api.js";
import * as alarms from "./alarms.js";
import { loadAlerts, loadModels, loadTwins, plant, putAlert, renderTree, select,
  statusEvent, twinEvent } from "./plant.js";
import * as twin from "./twin.js";

let current = null;

// A malformed escape in an address must not stop the page: it reads as text.
function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    return s;
  }
}

function route() {
  const h = location.hash || "#/alarms";
  const main = document.getElementById("main");
  if (current) current.unmount();
  current = null;
  const m = h.match(/^#\/twin\/(.+)$/);
  document.getElementById("nav-alarms").setAttribute("aria-current", m ? "false" : "page");
  if (m) {
    const id = decode(m[1]);
    select(id);
    current = twin;
    twin.mount(main, id);
  } else {
    const t = h.match(/[?&]twin=([^&]+)/);
    select(null);
    current = alarms;
    alarms.mount(main, t ? decode(t[1]) : "");
  }
}

function link(text, down) {
  const l = document.getElementById("link");
  l.textContent = text;
  l.className = "link" + (down ? " down" : "");
}

async function health() {
  try {
    const r = await fetch("/healthz", { cache: "no-store" });
    const doc = await r.json();
    return r.ok ? null : doc.reason || "unavailable";
  } catch (e) {
    return "twind cannot be reached";
  }
}

let stream = null, live = false;
async function showLink() {
  const why = await health();
  if (why) link("not ingesting: " + why, true);
  else link(live ? "live" : "reconnecting…", !live);
}

function listen() {
  stream = new EventSource("/api/v1/events");
  const parse = (fn) => (e) => { try { fn(JSON.parse(e.data)); } catch (err) { /* skip */ } };
  stream.addEventListener("open", () => {
    // Events missed while away are read again whole.
    const first = !live && plant.twins.size === 0;
    live = true;
    showLink();
    if (!first) Promise.all([loadTwins(), loadAlerts()]).then(() => alarms.render()).catch(() => {});
  });
  stream.addEventListener("error", () => { live = false; showLink(); });
  stream.addEventListener("twin", parse((ev) => { twinEvent(ev); twin.onEvent("twin", ev); }));
  stream.addEventListener("status", parse((ev) => { statusEvent(ev); twin.onEvent("status", ev); }));
  stream.addEventListener("alert", parse((a) => { putAlert(a); alarms.render(); }));
  stream.addEventListener("desired", parse((ev) => twin.onEvent("desired", ev)));
  stream.addEventListener("command", parse((c) => twin.onEvent("command", c)));
}

async function start() {
  link("connecting…", false);
  try {
    await Promise.all([loadModels(), loadTwins(), loadAlerts()]);
  } catch (err) {
    link("cannot read the plant: " + err.message, true);
  }
  renderTree();
  listen();
  window.addEventListener("hashchange", route);
  route();
  setInterval(showLink, 5000);
  setInterval(renderTree, 5000);   // shelves end, ages move
}

start();
