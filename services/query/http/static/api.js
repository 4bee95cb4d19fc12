// The query service's /api (services/query/http/app.py), with the examiner's token.

import { state } from "./state.js";

export class ApiError extends Error {
  constructor(status, kind, message) { super(message); this.status = status; this.kind = kind; }
}

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "not_ready", `the search service cannot be reached (${error.message})`);
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body.kind || "error",
                       body.error || `${response.status} ${response.statusText}`);
  }
  return response;
}

export const postJson = (path, body, signal) => api(path, {
  method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
  signal });

// A drawing (an /api/drawing URL) into an <img>, with the token; alt says why when it fails.
// data-loaded marks an image the browser has decoded (its size known), not one still loading.
export async function loadDrawing(img, url) {
  try {
    const blob = await (await api(url)).blob();
    img.addEventListener("load", () => { img.dataset.loaded = "true"; }, { once: true });
    img.src = URL.createObjectURL(blob);
  } catch (error) {
    img.alt = `drawing unavailable: ${error.message}`;
  }
}
