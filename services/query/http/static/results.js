// Searching and the results: one search at a time, pages by the server's tokens, the cards,
// the Locarno counts and the search record for the file.

import { api, loadDrawing, postJson } from "./api.js";
import { $, button, checkbox, el, framed } from "./dom.js";
import { clearDrawings } from "./drawing.js";
import { hideMessage, report, showMessage } from "./messages.js";
import { openPatent, toggleCompare, updateCompare } from "./patent.js";
import { PAGE_SIZE, state } from "./state.js";

function filters() {
  const checked = (selector) => [...document.querySelectorAll(selector)]
    .filter((i) => i.checked).map((i) => i.value);
  return { locarno: [...state.selected], date_from: $("#date-from").value,
           date_to: $("#date-to").value, views: checked("#view-list input") };
}

function firstPageBody() {
  return { text: $("#query-text").value.trim(), image: state.image?.b64 || "",
           image_name: state.image?.name || "", crop: state.image ? state.crop : null,
           mode: state.image ? $("#query-mode").value : "",
           drawings: state.views.map((v) => ({ image: v.b64, name: v.name, crop: null })),
           patent: $("#query-patent").value.trim(),
           sheet: $("#query-patent").value.trim() ? state.sheet : null,
           filters: filters(), page_size: PAGE_SIZE };
}

export async function runFirstPage() {
  const body = firstPageBody();
  if (!body.text && !body.image && !body.patent) {
    if (state.body) clearResults();
    return;
  }
  state.body = body;
  state.pageTokens = [""];
  await showPage(0);
}

export async function showPage(page) {
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
    response = await (await postJson("/api/search", body, abort.signal)).json();
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
  renderSuggestions(response);
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

export function clearResults() {
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
  if (query.drawings?.length) parts.push(`${query.drawings.length} more view${query.drawings.length > 1 ? "s" : ""}`);
  if (query.mode && query.mode !== "line") parts.push(`as ${query.mode}`);
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
  $("#legs-note").textContent = response.legs_note ? ` · ${response.legs_note}` : "";
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

// What the box over a hit's drawing says: the figure or part that matched best.
export function matchLabel(hit) {
  const figure = hit.figures.length === 1 ? `FIG. ${hit.figures[0]}` : "the sheet";
  const what = hit.matched === "part" ? `a part of ${figure}` : figure;
  return `matched here: ${what}`;
}

function card(hit) {
  const figures = hit.figures.length ? ` · FIG. ${hit.figures.join(", ")}` : "";
  const where = `${hit.patent} sheet ${hit.sheet}`;
  const labelled = (act, text, onClick) =>
    button(act, text, onClick, { attrs: { "aria-label": `${text}: ${where}` } });
  const loc = el("span", { class: "loc", text: `LOC ${hit.locarno.slice(0, 2)}-${hit.locarno.slice(2)}`,
                           title: hit.locarno_title });
  const node = el("article", {
    class: "card", tabIndex: 0, data: { patent: hit.patent, sheet: hit.sheet, rank: hit.rank },
    attrs: { role: "listitem", "aria-label": `${hit.patent}, ${hit.title}, sheet ${hit.sheet}` },
  },
  el("div", { class: "thumb", on: { click: () => openPatent(hit.patent) } },
     framed(el("img", { alt: where, data: { src: `${hit.drawing}?size=thumbnail` } }),
            [{ region: hit.region, label: matchLabel(hit), kind: "match" }])),
  el("div", { class: "num", text: `${hit.patent} ` },
     el("span", { class: "muted", text: `sheet ${hit.sheet}${figures}` })),
  el("div", { class: "title", text: hit.title }),
  el("div", { class: "facts" }, el("span", { class: "date", text: hit.grant_date }), " ", loc, " ",
     el("span", { class: "view", text: hit.view }), " ",
     el("span", { class: "score", text: `${Number(hit.score).toFixed(3)} ${hit.matched}` })),
  el("div", { class: "fig", text: hit.figure_text }),
  el("div", { class: "found", text: `found by ${hit.found_by.join(", ")}` }),
  el("div", { class: "actions" }, labelled("open", "Open", () => openPatent(hit.patent)), " ",
     labelled("compare", "Compare", () => toggleCompare(hit)), " ",
     labelled("similar", "More like this", () => moreLike(hit.patent, null))));
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

// The model's suggested classes: one click filters by the class (as a Locarno facet does).
function renderSuggestions(response) {
  const chips = response.suggested_classes.map((c) => button(
    "suggest-class", `${c.locarno} ${c.title} · ${Math.round(c.probability * 100)}%`,
    () => { state.selected.add(c.locarno); runFirstPage(); },
    { class: "chip", data: { act: "suggest-class", locarno: c.locarno } }));
  const note = response.suggestions_note ? [el("span", { class: "muted",
                                                         text: response.suggestions_note })] : [];
  $("#suggested-classes").replaceChildren(...chips, ...note);
}

export function moreLike(patent, sheet) {
  $("#patent-view").close();
  $("#query-text").value = "";
  clearDrawings();
  $("#query-patent").value = patent;
  state.sheet = sheet;
  runFirstPage();
}

export async function exportRecord(format) {
  if (!state.record) return;
  let response;
  try {
    response = await api(`/api/export?format=${format}`, { method: "POST",
      body: JSON.stringify(state.record), headers: { "Content-Type": "application/json" } });
  } catch (error) { report(error); return; }
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1]
    || `patentclip-search.${format}`;
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
