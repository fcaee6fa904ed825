// The page's start: who am I (a token when twind asks for one), read the
// plant over REST, keep it live over the event stream, and show the view
// the address names (#/alarms, #/twin/{id}).
import { get, onUnauthorized, stream, token } from "./api.js";
import * as alarms from "./alarms.js";
import { loadAlerts, loadModels, loadTwins, plant, putAlert, renderTree, select, session,
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

let live = false;
async function showLink() {
  const why = await health();
  if (why) link("not ingesting: " + why, true);
  else link(live ? "live" : "reconnecting…", !live);
}

const HANDLERS = {
  twin: (ev) => { twinEvent(ev); twin.onEvent("twin", ev); },
  status: (ev) => { statusEvent(ev); twin.onEvent("status", ev); },
  alert: (a) => { putAlert(a); alarms.render(); },
  desired: (ev) => twin.onEvent("desired", ev),
  command: (c) => twin.onEvent("command", c),
};

// The event stream, for as long as the page is open; read again after a loss.
async function listen() {
  let first = true;
  for (;;) {
    try {
      await stream("/api/v1/events", () => {
        live = true;
        showLink();
        // Events missed while away are read again whole.
        if (!first) Promise.all([loadTwins(), loadAlerts()]).then(() => alarms.render())
          .catch(() => {});
        first = false;
      }, (type, data) => {
        const fn = HANDLERS[type];
        if (!fn) return;
        try { fn(JSON.parse(data)); } catch (err) { /* one bad event is skipped */ }
      });
    } catch (err) {
      /* lost, refused or cut off: said below, tried again */
    }
    live = false;
    showLink();
    await new Promise((r) => setTimeout(r, 3000));
  }
}

// Asks for a token until twind takes one; resolves with /api/v1/whoami.
function login(why) {
  const dlg = document.getElementById("login");
  const input = document.getElementById("token-input");
  const msg = document.getElementById("login-msg");
  msg.textContent = why;
  // Esc would close the prompt and leave the page waiting on it for good.
  dlg.oncancel = (e) => e.preventDefault();
  if (!dlg.open) dlg.showModal();
  input.focus();
  return new Promise((resolve) => {
    const form = document.getElementById("login-form");
    form.onsubmit = async (e) => {
      e.preventDefault();
      token.set(input.value.trim());
      try {
        const me = await get("/api/v1/whoami");
        input.value = "";
        dlg.close();
        resolve(me);
      } catch (err) {
        token.clear();
        msg.textContent = err.status === 401 ? "twind does not know this token." : err.message;
      }
    };
  });
}

async function whoami() {
  try {
    return await get("/api/v1/whoami");
  } catch (err) {
    if (err.status !== 401) throw err;
    token.clear();
    return login("twind asks for a token. It is kept only while this tab is open.");
  }
}

function showWho(me) {
  session.name = me.name;
  session.roles = new Set(me.roles);
  session.tokens = me.tokens;
  const who = document.getElementById("who");
  who.textContent = me.tokens ? `${me.name} (${me.roles.join(", ")})` : "";
  document.getElementById("logout").hidden = !me.tokens;
}

async function start() {
  link("connecting…", false);
  let me;
  try {
    me = await whoami();
  } catch (err) {
    link("twind cannot be reached: " + err.message, true);
    me = { name: null, roles: [], tokens: false };
  }
  showWho(me);
  // A token revoked while the page is open: ask again, then carry on.
  onUnauthorized(() => {
    token.clear();
    login("The token was refused (revoked?). Enter one again.").then((m) => {
      showWho(m);
      route();
    });
  });
  document.getElementById("logout").addEventListener("click", () => {
    token.clear();
    location.reload();
  });
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
