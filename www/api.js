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

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store" };
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
    throw new ApiError(r.status, err.code, err.message, doc);
  }
  return { doc, etag: r.headers.get("ETag") };
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
