// The REST API, as any script would use it: every request the page makes goes
// through here, to twind's own origin only.

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// The token, when twind asks for one: kept for this browser tab's session only.
const KEY = "twind.token";
export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

let unauthorized = () => {};
// Called when twind answers 401: no token, or one that was revoked.
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function authHeaders(headers) {
  const t = token.get();
  return t ? { ...headers, Authorization: "Bearer " + t } : { ...headers };
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: authHeaders(headers), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let doc = null;
  try {
    doc = await r.json();
  } catch (e) {
    doc = null;
  }
  if (!r.ok) {
    const err = doc && doc.error ? doc.error : { code: "http_" + r.status, message: r.statusText };
    if (r.status === 401) unauthorized();
    throw new ApiError(r.status, err.code, err.message, doc);
  }
  return { doc, etag: r.headers.get("ETag") };
}

const STREAM_BUFFER_MAX = 1 << 20;   // an event larger than this is no event of twind's

/*
 * Server-Sent Events read with fetch, so that the token goes in a header
 * (EventSource cannot send one). Calls onOpen once, then onEvent(type,
 * data) per event; resolves when the stream ends, rejects on an error.
 */
export async function stream(path, onOpen, onEvent, signal) {
  const r = await fetch(path, { headers: authHeaders({}), cache: "no-store", signal });
  if (!r.ok) {
    if (r.status === 401) unauthorized();
    throw new ApiError(r.status, "http_" + r.status, r.statusText, null);
  }
  onOpen();
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, "\n");
    if (buf.length > STREAM_BUFFER_MAX) throw new Error("event too large");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(type, data.join("\n"));
    }
  }
}

export const get = (path) => api("GET", path).then((r) => r.doc);

// Query strings with encoded values.
export function q(path, params) {
  const s = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v))
    .join("&");
  return s ? path + "?" + s : path;
}

export const twinPath = (id) => "/api/v1/twins/" + encodeURIComponent(id);
