// The examiner web app: plain ES module, no framework, no CDN (it must work offline).
// Talks to the query service's /api (services/query/http/app.py) with the examiner's token.
// Every value from the server is data: the page builds DOM nodes and sets textContent and
// attributes, never HTML strings (the CSP's Trusted Types refuse them; a test greps for them).
"use strict";

const $ = (selector) => document.querySelector(selector);
const PAGE_SIZE = 24;
const TOKEN_KEY = "patentclip.token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  info: null,
  image: null,          // {b64, name, bytes, previewUrl}
  crop: null,           // {left, top, right, bottom} as fractions of the drawing
  sheet: null,          // "more like this" on one sheet
  body: null,           // the first page's request body
  response: null,       // the page shown
  record: null,         // the search record: the query and every result seen
  page: 0,
  pageTokens: [""],     // pageTokens[n]: the page_token of page n (the server's next_page_token)
  selected: new Set(),  // Locarno classes filtered on
  compare: [],          // [{label, url}] (url: an /api/drawing path or a blob: URL)
  retrying: false,      // a not-ready header is being polled
  searchSeq: 0,         // the newest search; an older response is dropped when it lands
  searchAbort: null,    // aborts the search in flight when a newer one starts
};

class ApiError extends Error {
  constructor(status, kind, message) { super(message); this.status = status; this.kind = kind; }
}

async function api(path, options = {}) {
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

// -- messages: one banner, a kind per state (tests and styles read data-kind)

// One message per kind the server sends (patentclip/errors.py ERROR_ANSWERS and
// edge.py); a test checks that every kind of the server has one here.
const MESSAGES = {
  auth: "A valid access token is needed.",
  permission: "This token may not search.",
  not_ready: "The search service is not ready yet.",
  too_large: "That drawing is too large.",
  too_long: "That description is too long.",
  bad_image: "That file is not a drawing this service can read.",
  invalid: "The search could not be run as given.",
  not_found: "Not found.",
  deadline: "The search took too long; try again or narrow it.",
  busy: "The service is busy; try again in a moment.",
  model_changed: "The model changed while you were paging; search again.",
  host: "This address is not served; open the service by its configured name.",
  malformed: "The request was malformed.",
  internal: "Something went wrong on the server.",
  empty: "No results.",
};

function showMessage(kind, detail) {
  const box = $("#message");
  box.dataset.kind = kind;
  box.textContent = `${MESSAGES[kind] || "Something went wrong."} ${detail || ""}`.trim();
  box.hidden = false;
}

function hideMessage() { const box = $("#message"); box.hidden = true; delete box.dataset.kind; }

function report(error) {
  if (!(error instanceof ApiError)) { showMessage("internal", String(error)); return; }
  showMessage(error.kind, error.message);
  if (error.kind === "auth" || error.kind === "permission") openToken();
}

// -- header: the live model and the corpus

async function loadInfo() {
  try {
    state.info = await (await api("/api/info")).json();
  } catch (error) {
    $("#server-info").textContent = error.kind === "not_ready" ? "not ready" : "not connected";
    report(error);
    if (error.kind === "not_ready" && !state.retrying) {  // one retry loop at a time
      state.retrying = true;
      setTimeout(() => { state.retrying = false; loadInfo(); }, 2000);
    }
    return;
  }
  const info = state.info;
  $("#auth-banner").hidden = info.auth !== false;
  performance.mark("ready");  // the header is filled: the page is usable
  $("#server-info").textContent =
    `model ${info.model_version} · ${info.corpus_sheets.toLocaleString()} drawing sheets`;
  $("#server-info").title = `collection ${info.collection} (alias ${info.alias})`;
  if (["not_ready", "auth", "permission"].includes($("#message").dataset.kind)) hideMessage();
  renderViews(info.views);
}

function renderViews(views) {
  const list = $("#view-list");
  if (list.childElementCount) return;
  for (const view of views) {
    list.append(checkbox(`view-${view}`, view, view.replace("_", " "), "", runFirstPage));
  }
}

function checkbox(id, value, text, count, onChange, checked = false) {
  const label = document.createElement("label");
  const input = document.createElement("input");
  Object.assign(input, { type: "checkbox", id, value, checked });
  input.addEventListener("change", onChange);
  const name = document.createElement("span");
  name.textContent = text;
  label.append(input, name);
  if (count !== "") {
    const badge = document.createElement("span");
    badge.className = "count";
    badge.textContent = count;
    label.append(badge);
  }
  return label;
}

// -- the query drawing: upload, paste, drop, then crop

async function takeFile(file) {
  if (!file) return;
  hideMessage();
  const bytes = new Uint8Array(await file.arrayBuffer());
  let preview;
  try {
    preview = await (await api("/api/preview", { method: "POST", body: bytes,
      headers: { "Content-Type": "application/octet-stream", "X-File-Name": file.name || "pasted" } })).blob();
  } catch (error) { removeDrawing(); report(error); return; }
  if (state.image) URL.revokeObjectURL(state.image.previewUrl);
  state.image = { b64: toBase64(bytes), name: file.name || "pasted drawing", bytes: bytes.length,
                  previewUrl: URL.createObjectURL(preview) };
  $("#query-preview").src = state.image.previewUrl;
  $("#crop-box").hidden = false;
  $("#drawing-tools").hidden = false;
  $("#drop-hint").hidden = true;
  setCrop(null);
  $("#query-patent").value = "";
  state.sheet = null;
  updateCompare();
}

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function removeDrawing() {
  if (state.image) URL.revokeObjectURL(state.image.previewUrl);
  state.image = null;
  setCrop(null);
  $("#crop-box").hidden = true;
  $("#drawing-tools").hidden = true;
  $("#drop-hint").hidden = false;
  $("#file-input").value = "";
  updateCompare();
}

function setCrop(crop) {
  state.crop = crop;
  const rect = $("#crop-rect");
  rect.hidden = !crop;
  if (crop) {
    Object.assign(rect.style, { left: `${crop.left * 100}%`, top: `${crop.top * 100}%`,
      width: `${(crop.right - crop.left) * 100}%`, height: `${(crop.bottom - crop.top) * 100}%` });
  }
  $("#crop-label").textContent = crop
    ? `searching the selected part (${Math.round((crop.right - crop.left) * 100)}% × ${Math.round((crop.bottom - crop.top) * 100)}%)`
    : "drag on the drawing to search for a part of it";
}

function installCrop() {
  const box = $("#crop-box");
  let start = null;
  const fraction = (event) => {
    const r = $("#query-preview").getBoundingClientRect();
    return { x: Math.min(Math.max((event.clientX - r.left) / r.width, 0), 1),
             y: Math.min(Math.max((event.clientY - r.top) / r.height, 0), 1) };
  };
  const region = (a, b) => ({ left: Math.min(a.x, b.x), top: Math.min(a.y, b.y),
                              right: Math.max(a.x, b.x), bottom: Math.max(a.y, b.y) });
  box.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    start = fraction(event);
    box.setPointerCapture(event.pointerId);
  });
  box.addEventListener("pointermove", (event) => {
    if (start) setCrop(region(start, fraction(event)));
  });
  box.addEventListener("pointerup", (event) => {
    if (!start) return;
    const crop = region(start, fraction(event));
    start = null;
    setCrop(crop.right - crop.left > 0.02 && crop.bottom - crop.top > 0.02 ? crop : null);
  });
  box.addEventListener("keydown", (event) => {
    const crop = keyboardCrop(state.crop, event.key, event.shiftKey);
    if (crop === undefined) return;
    event.preventDefault();
    setCrop(crop);
  });
}

// The crop by keyboard: an arrow starts a centred half-size crop, then arrows move it and
// Shift+arrows move its right/bottom edge, 5% a step; Delete or Backspace clears it.
// Returns undefined for keys it does not handle.
function keyboardCrop(crop, key, shift) {
  if (key === "Delete" || key === "Backspace") return null;
  const step = { ArrowLeft: [-0.05, 0], ArrowRight: [0.05, 0], ArrowUp: [0, -0.05],
                 ArrowDown: [0, 0.05] }[key];
  if (!step) return undefined;
  if (!crop) return { left: 0.25, top: 0.25, right: 0.75, bottom: 0.75 };
  const clamp = (v) => Math.min(Math.max(v, 0), 1);
  const [dx, dy] = step;
  if (shift) {
    return { ...crop, right: clamp(Math.max(crop.right + dx, crop.left + 0.05)),
             bottom: clamp(Math.max(crop.bottom + dy, crop.top + 0.05)) };
  }
  const w = crop.right - crop.left, h = crop.bottom - crop.top;
  const left = Math.min(Math.max(crop.left + dx, 0), 1 - w);
  const top = Math.min(Math.max(crop.top + dy, 0), 1 - h);
  return { left, top, right: left + w, bottom: top + h };
}

function installDrop() {
  const zone = $("#drop-zone");
  $("#choose-file").addEventListener("click", () => $("#file-input").click());
  $("#file-input").addEventListener("change", (e) => takeFile(e.target.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    takeFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (file) { e.preventDefault(); takeFile(file); }
  });
  $("#clear-crop").addEventListener("click", () => setCrop(null));
  $("#remove-drawing").addEventListener("click", removeDrawing);
}

// -- searching

function filters() {
  const checked = (selector) => [...document.querySelectorAll(selector)]
    .filter((i) => i.checked).map((i) => i.value);
  return { locarno: [...state.selected], date_from: $("#date-from").value,
           date_to: $("#date-to").value, views: checked("#view-list input") };
}

function firstPageBody() {
  return { text: $("#query-text").value.trim(), image: state.image?.b64 || "",
           image_name: state.image?.name || "", crop: state.image ? state.crop : null,
           patent: $("#query-patent").value.trim(),
           sheet: $("#query-patent").value.trim() ? state.sheet : null,
           filters: filters(), page_size: PAGE_SIZE };
}

async function runFirstPage() {
  const body = firstPageBody();
  if (!body.text && !body.image && !body.patent) {
    if (state.body) clearResults();
    return;
  }
  state.body = body;
  state.pageTokens = [""];
  await showPage(0);
}

async function showPage(page) {
  hideMessage();
  // Pages are reached by the tokens the server gave: the same paging as gRPC's, bound to
  // the model version that ranked the first page.
  const body = { ...state.body, page_token: state.pageTokens[page] };
  // One search at a time: a newer one aborts the older, and a response that still lands
  // late is dropped, so the results and the record are always the newest query's.
  const seq = ++state.searchSeq;
  state.searchAbort?.abort();
  const abort = state.searchAbort = new AbortController();
  $("#search-button").disabled = true;
  $("#result-summary").textContent = "searching…";
  performance.mark("search-start");
  let response;
  try {
    response = await (await api("/api/search", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" }, signal: abort.signal })).json();
  } catch (error) {
    if (seq !== state.searchSeq) return;  // superseded: the newer search reports
    $("#result-summary").textContent = "";
    report(error);
    return;
  } finally {
    if (seq === state.searchSeq) $("#search-button").disabled = false;
  }
  if (seq !== state.searchSeq) return;
  state.page = page;
  state.pageTokens[page + 1] = response.next_page_token;
  state.response = response;
  keepRecord(response.record, page);
  renderResults(response);
  renderCounts(response);
  // The round trip as the examiner sees it: request, search, results on screen (the
  // thumbnails load after, lazily). `make bench-web` reads these measures.
  performance.measure("search", "search-start");
}

function keepRecord(record, page) {
  // Later pages add to the record only when they are pages of the same query.
  const same = state.record && JSON.stringify(state.record.query) === JSON.stringify(record.query)
    && state.record.model_version === record.model_version;
  if (page === 0 || !same) { state.record = record; return; }
  const seen = new Map(state.record.results.map((r) => [r.rank, r]));
  for (const result of record.results) seen.set(result.rank, result);
  state.record.results = [...seen.values()].sort((a, b) => a.rank - b.rank);
}

function clearResults() {
  state.body = state.response = state.record = null;
  $("#results").replaceChildren();
  $("#result-summary").textContent = "Search by description, drawing or patent number.";
  $("#page-label").textContent = "";
  for (const id of ["#prev-page", "#next-page", "#export-csv", "#export-json"]) $(id).disabled = true;
}

function describeQuery(query) {
  if (query.kind === "similar") {
    return `more like ${query.patent}${query.sheet !== null ? ` sheet ${query.sheet}` : ""}`;
  }
  const parts = [];
  if (query.text) parts.push(`“${query.text}”`);
  if (query.image_sha256) parts.push(`drawing ${query.image_name}${query.crop ? " (cropped)" : ""}`);
  return parts.join(" + ");
}

function renderResults(response) {
  const grid = $("#results");
  grid.replaceChildren(...response.hits.map(card));
  const first = response.page * response.page_size + 1;
  const last = first + response.hits.length - 1;
  $("#result-summary").textContent = response.hits.length
    ? `${first}–${last} · ${describeQuery(response.record.query)}`
    : describeQuery(response.record.query);
  $("#page-label").textContent = response.hits.length ? `page ${response.page + 1}` : "";
  $("#prev-page").disabled = response.page === 0;
  $("#next-page").disabled = !response.has_more;
  $("#export-csv").disabled = $("#export-json").disabled = false;
  if (!response.hits.length) {
    showMessage("empty", "Nothing matches this query and these filters: remove a filter or " +
                "describe the design differently.");
  }
  for (const img of grid.querySelectorAll("img[data-src]")) thumbnails.observe(img);
  updateCompare();
}

// An element with a class and text: the one way the page puts server values on screen.
function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function button(act, text) {
  const b = el("button", "", text);
  b.type = "button";
  b.dataset.act = act;
  return b;
}

function card(hit) {
  const node = el("article", "card");
  node.tabIndex = 0;
  node.setAttribute("role", "listitem");
  Object.assign(node.dataset, { patent: hit.patent, sheet: hit.sheet, rank: hit.rank });
  const figures = hit.figures.length ? ` · FIG. ${hit.figures.join(", ")}` : "";
  const thumb = el("div", "thumb");
  const img = el("img");
  img.alt = `${hit.patent} sheet ${hit.sheet}`;
  img.dataset.src = `${hit.drawing}?size=thumbnail`;
  thumb.append(img);
  const num = el("div", "num", `${hit.patent} `);
  num.append(el("span", "muted", `sheet ${hit.sheet}${figures}`));
  const loc = el("span", "loc", `LOC ${hit.locarno.slice(0, 2)}-${hit.locarno.slice(2)}`);
  loc.title = hit.locarno_title;
  const facts = el("div", "facts");
  facts.append(el("span", "date", hit.grant_date), " ", loc, " ", el("span", "view", hit.view),
               " ", el("span", "score", `${Number(hit.score).toFixed(3)} ${hit.matched}`));
  const actions = el("div", "actions");
  const [open, compare, similar] = [button("open", "Open"), button("compare", "Compare"),
                                    button("similar", "More like this")];
  for (const b of [open, compare, similar]) b.setAttribute("aria-label", `${b.textContent}: ${hit.patent} sheet ${hit.sheet}`);
  actions.append(open, " ", compare, " ", similar);
  node.append(thumb, num, el("div", "title", hit.title), facts, el("div", "fig", hit.figure_text),
              actions);
  node.setAttribute("aria-label", `${hit.patent}, ${hit.title}, sheet ${hit.sheet}`);
  thumb.addEventListener("click", () => openPatent(hit.patent));
  open.addEventListener("click", () => openPatent(hit.patent));
  compare.addEventListener("click", () => toggleCompare(hit));
  similar.addEventListener("click", () => moreLike(hit.patent, null));
  node.hit = hit;
  return node;
}

const thumbnails = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    thumbnails.unobserve(entry.target);
    loadDrawing(entry.target, entry.target.dataset.src);
  }
}, { rootMargin: "200px" });

async function loadDrawing(img, url) {
  try {
    const blob = await (await api(url)).blob();
    img.src = URL.createObjectURL(blob);
    img.dataset.loaded = "true";
  } catch (error) {
    img.alt = `drawing unavailable: ${error.message}`;
  }
}

function renderCounts(response) {
  const list = $("#locarno-list");
  const counts = new Map(response.locarno_counts.map((c) => [c.locarno_class, c]));
  for (const cls of state.selected) {
    if (!counts.has(cls)) counts.set(cls, { locarno_class: cls, title: "", results: 0 });
  }
  list.replaceChildren(...[...counts.values()].map((c) => checkbox(
    `loc-${c.locarno_class}`, c.locarno_class, `${c.locarno_class} ${c.title}`, c.results,
    (e) => { e.target.checked ? state.selected.add(c.locarno_class)
                              : state.selected.delete(c.locarno_class); runFirstPage(); },
    state.selected.has(c.locarno_class))));
  $("#counts-note").textContent = response.counts_depth
    ? `(in the first ${response.counted} results)` : "";
}

function moreLike(patent, sheet) {
  $("#patent-view").close();
  $("#query-text").value = "";
  removeDrawing();
  $("#query-patent").value = patent;
  state.sheet = sheet;
  runFirstPage();
}

// -- the patent view

async function openPatent(patent) {
  let view;
  try {
    view = await (await api(`/api/patent/${encodeURIComponent(patent)}`)).json();
  } catch (error) { report(error); return; }
  $("#patent-title").textContent = `${view.patent} — ${view.title}`;
  const meta = $("#patent-meta");
  meta.replaceChildren();
  const fact = (text) => { const s = document.createElement("span"); s.textContent = text; meta.append(s); };
  fact(`granted ${view.grant_date}`);
  fact(`Locarno ${view.locarno} ${view.locarno_title}`);
  if (view.uspc.length) fact(`USPC ${view.uspc.join(", ")}`);
  const link = document.createElement("a");
  Object.assign(link, { href: view.uspto_url, target: "_blank", rel: "noopener",
                        textContent: "USPTO record", id: "uspto-link" });
  meta.append(link);
  $("#patent-claim").textContent = view.claim || "(the claim is not stored for this patent)";
  $("#patent-sheets").replaceChildren(...view.sheets.map((sheet) => sheetFigure(view, sheet)));
  $("#patent-view").showModal();
}

function sheetFigure(view, sheet) {
  const el = document.createElement("figure");
  el.className = "sheet";
  el.dataset.sheet = sheet.sheet;
  const img = document.createElement("img");
  img.alt = `${view.patent} sheet ${sheet.sheet}`;
  loadDrawing(img, `${sheet.drawing}?size=medium`);
  const caption = document.createElement("figcaption");
  const head = document.createElement("strong");
  head.textContent = `Sheet ${sheet.sheet}${sheet.figures.length ? ` · FIG. ${sheet.figures.join(", ")}` : ""}`;
  caption.append(head);
  for (const text of sheet.descriptions) {
    const p = document.createElement("p");
    p.textContent = text;
    caption.append(p);
  }
  const actions = document.createElement("div");
  actions.className = "row";
  const similar = document.createElement("button");
  similar.type = "button";
  similar.dataset.act = "similar-sheet";
  similar.textContent = "More like this sheet";
  similar.addEventListener("click", () => moreLike(view.patent, sheet.sheet));
  const compare = document.createElement("button");
  compare.type = "button";
  compare.dataset.act = "compare";
  compare.textContent = "Compare";
  compare.addEventListener("click", () => toggleCompare({ patent: view.patent, sheet: sheet.sheet,
                                                          title: view.title, drawing: sheet.drawing }));
  actions.append(similar, compare);
  el.append(img, caption, actions);
  return el;
}

// -- compare: two drawings side by side (the query and a hit, or two hits)

function toggleCompare(hit) {
  const key = `${hit.patent}/${hit.sheet}`;
  const at = state.compare.findIndex((c) => c.key === key);
  if (at >= 0) state.compare.splice(at, 1);
  else {
    if (state.compare.length === 2) state.compare.shift();
    state.compare.push({ key, label: `${hit.patent} sheet ${hit.sheet} — ${hit.title}`,
                         url: `${hit.drawing}?size=medium` });
  }
  updateCompare();
}

function compareItems() {
  const items = [...state.compare];
  if (items.length === 1 && state.image) {
    items.unshift({ key: "query", label: `query: ${state.image.name}${state.crop ? " (the cropped part)" : ""}`,
                    url: state.image.previewUrl, query: true });
  }
  return items;
}

// The query as searched: the preview, cut to the crop when there is one.
function queryImage(img) {
  const crop = state.crop;
  if (!crop) { img.src = state.image.previewUrl; return; }
  const source = $("#query-preview");
  const canvas = document.createElement("canvas");
  const [w, h] = [source.naturalWidth, source.naturalHeight];
  canvas.width = Math.max(1, Math.round((crop.right - crop.left) * w));
  canvas.height = Math.max(1, Math.round((crop.bottom - crop.top) * h));
  canvas.getContext("2d").drawImage(source, crop.left * w, crop.top * h, canvas.width,
                                    canvas.height, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => { img.src = URL.createObjectURL(blob); });
}

function updateCompare() {
  const button = $("#compare-button");
  button.textContent = `Compare (${state.compare.length})`;
  button.disabled = compareItems().length !== 2;
  for (const el of document.querySelectorAll(".card")) {
    el.classList.toggle("selected", state.compare.some((c) => c.key === `${el.dataset.patent}/${el.dataset.sheet}`));
  }
}

function openCompare() {
  const panes = compareItems().map((item) => {
    const figure = document.createElement("figure");
    figure.dataset.key = item.key;
    const img = document.createElement("img");
    img.alt = item.label;
    if (item.query) queryImage(img); else loadDrawing(img, item.url);
    const caption = document.createElement("figcaption");
    caption.textContent = item.label;
    figure.append(img, caption);
    return figure;
  });
  $("#compare-panes").replaceChildren(...panes);
  $("#compare-view").showModal();
}

// -- the search record, for the file

async function exportRecord(format) {
  if (!state.record) return;
  let response;
  try {
    response = await api(`/api/export?format=${format}`, { method: "POST",
      body: JSON.stringify(state.record), headers: { "Content-Type": "application/json" } });
  } catch (error) { report(error); return; }
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1]
    || `patentclip-search.${format}`;
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- keyboard

function installKeys() {
  $("#results").addEventListener("keydown", (event) => {
    const cards = [...document.querySelectorAll(".card")];
    const at = cards.indexOf(document.activeElement);
    if (at < 0) return;
    const columns = getComputedStyle($("#results")).gridTemplateColumns.split(" ").length;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
    const hit = cards[at].hit;
    if (event.key in moves) {
      event.preventDefault();
      cards[Math.min(Math.max(at + moves[event.key], 0), cards.length - 1)].focus();
    } else if (event.key === "Enter") {
      event.preventDefault();
      openPatent(hit.patent);
    } else if (event.key === "c") {
      toggleCompare(hit);
    } else if (event.key === "m") {
      moreLike(hit.patent, null);
    }
  });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if (event.key === "/" && !typing && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      $("#query-text").focus();
    }
  });
  $("#query-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); runFirstPage(); }
  });
}

// -- the token

function openToken() {
  const dialog = $("#token-view");
  if (!dialog.open) { $("#token-input").value = state.token; dialog.showModal(); }
}

function installToken() {
  $("#token-button").addEventListener("click", openToken);
  $("#token-form").addEventListener("submit", () => {
    state.token = $("#token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    hideMessage();
    loadInfo();
  });
}

function install() {
  installDrop();
  installCrop();
  installKeys();
  installToken();
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); runFirstPage(); });
  $("#reset-button").addEventListener("click", () => {
    $("#query-text").value = $("#query-patent").value = "";
    state.sheet = null;
    removeDrawing();
    clearResults();
    hideMessage();
  });
  $("#query-patent").addEventListener("input", () => { state.sheet = null; });
  for (const id of ["#date-from", "#date-to"]) $(id).addEventListener("change", runFirstPage);
  $("#prev-page").addEventListener("click", () => showPage(state.page - 1));
  $("#next-page").addEventListener("click", () => showPage(state.page + 1));
  $("#compare-button").addEventListener("click", openCompare);
  $("#export-csv").addEventListener("click", () => exportRecord("csv"));
  $("#export-json").addEventListener("click", () => exportRecord("json"));
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  loadInfo();
  // The header follows a rollout: the live model can change while the page is open.
  setInterval(() => { if (state.info) loadInfo(); }, 30000);
}

install();
