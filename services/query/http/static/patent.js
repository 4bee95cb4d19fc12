// The patent view (every sheet with its figure descriptions, the claim, the USPTO link) and
// compare: two drawings side by side (the query and a hit, or two hits).

import { api, loadDrawing } from "./api.js";
import { $, button, el, framed } from "./dom.js";
import { queryImage } from "./drawing.js";
import { report } from "./messages.js";
import { matchLabel, moreLike } from "./results.js";
import { state } from "./state.js";

export async function openPatent(patent) {
  let view;
  try {
    view = await (await api(`/api/patent/${encodeURIComponent(patent)}`)).json();
  } catch (error) { report(error); return; }
  $("#patent-title").textContent = `${view.patent} — ${view.title}`;
  const facts = [`granted ${view.grant_date}`, `Locarno ${view.locarno} ${view.locarno_title}`,
                 ...(view.uspc.length ? [`USPC ${view.uspc.join(", ")}`] : [])];
  $("#patent-meta").replaceChildren(
    ...facts.map((text) => el("span", { text })),
    el("a", { href: view.uspto_url, target: "_blank", rel: "noopener", text: "USPTO record",
              id: "uspto-link" }));
  $("#patent-claim").textContent = view.claim || "(the claim is not stored for this patent)";
  $("#patent-sheets").replaceChildren(...view.sheets.map((sheet) => sheetFigure(view, sheet)));
  showCitations(view);
  $("#patent-view").showModal();
}

const CITED_BY = { examiner: "cited by examiner", applicant: "cited by applicant",
                   other: "cited by other", "": "citation" };

// The references the grant cites, and the corpus's grants citing it: DOM, never HTML.
function showCitations(view) {
  const cites = view.citations.map((c) => el("li", { class: `cite ${c.category || "unstated"}`,
                                                     data: { patent: c.patent } },
    el("span", { class: "category", text: CITED_BY[c.category] ?? "citation" }), " ",
    c.patent ? patentLink(c.patent, c.in_corpus, c.uspto_url)
             : el("span", { text: c.text || `${c.country} ${c.number}` }),
    el("span", { text: c.name ? ` ${c.name}` : "" }),
    el("span", { text: c.date ? ` (${String(c.date).slice(0, 4)})` : "" })));
  $("#patent-cites").replaceChildren(
    ...(cites.length ? cites : [el("li", { text: "none stored for this patent" })]));
  const citing = view.cited_by.map((c) => el("li", { data: { patent: c.patent } },
    patentLink(c.patent, true, ""), el("span", { text: ` ${CITED_BY[c.category] ?? ""}` })));
  $("#patent-cited-by").replaceChildren(
    ...(citing.length ? citing : [el("li", { text: "no grant of this corpus cites it" })]));
}

function patentLink(patent, inCorpus, usptoUrl) {
  if (!inCorpus) {
    return el("a", { href: usptoUrl, target: "_blank", rel: "noopener", text: patent,
                     class: "uspto" });
  }
  return el("a", { href: "#", text: patent, class: "in-corpus",
                   on: { click: (event) => { event.preventDefault(); openPatent(patent); } } });
}

function sheetFigure(view, sheet) {
  const img = el("img", { alt: `${view.patent} sheet ${sheet.sheet}` });
  loadDrawing(img, `${sheet.drawing}?size=medium`);
  const figures = sheet.figures.length ? ` · FIG. ${sheet.figures.join(", ")}` : "";
  const hit = { patent: view.patent, sheet: sheet.sheet, title: view.title, drawing: sheet.drawing };
  const boxes = sheet.regions.map((f) => ({ region: f.region, kind: "figure",
                                            label: `FIG. ${f.figure} (${f.view})` }));
  return el("figure", { class: "sheet", data: { sheet: sheet.sheet } }, framed(img, boxes),
    el("figcaption", {}, el("strong", { text: `Sheet ${sheet.sheet}${figures}` }),
       ...sheet.descriptions.map((text) => el("p", { text }))),
    el("div", { class: "row" },
       button("similar-sheet", "More like this sheet", () => moreLike(view.patent, sheet.sheet)),
       button("compare", "Compare", () => toggleCompare(hit))));
}

export function toggleCompare(hit) {
  const key = `${hit.patent}/${hit.sheet}`;
  const at = state.compare.findIndex((c) => c.key === key);
  if (at >= 0) state.compare.splice(at, 1);
  else {
    if (state.compare.length === 2) state.compare.shift();
    state.compare.push({ key, label: `${hit.patent} sheet ${hit.sheet} — ${hit.title}`,
                         url: `${hit.drawing}?size=medium`, region: hit.region,
                         regionLabel: hit.region ? matchLabel(hit) : "" });
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

export function updateCompare() {
  const compare = $("#compare-button");
  compare.textContent = `Compare (${state.compare.length})`;
  compare.disabled = compareItems().length !== 2;
  for (const node of document.querySelectorAll(".card")) {
    node.classList.toggle("selected", state.compare.some(
      (c) => c.key === `${node.dataset.patent}/${node.dataset.sheet}`));
  }
}

export function openCompare() {
  const panes = compareItems().map((item) => {
    const img = el("img", { alt: item.label });
    if (item.query) queryImage(img); else loadDrawing(img, item.url);
    const boxes = [{ region: item.region, label: item.regionLabel, kind: "match" }];
    return el("figure", { data: { key: item.key } }, framed(img, boxes),
              el("figcaption", { text: item.label }));
  });
  $("#compare-panes").replaceChildren(...panes);
  $("#compare-view").showModal();
}
