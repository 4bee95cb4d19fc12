// The examiner web app: plain ES modules, no framework, no build step, no CDN (it must work
// offline). This entry wires the page; the modules beside it hold the parts:
//   state.js     the page's one state object
//   dom.js       el(), the one way DOM is built (text and attributes, never HTML strings)
//   api.js       the query service's /api with the examiner's token
//   messages.js  the message banner: one message per error kind the server sends
//   token.js     the token dialog
//   header.js    the live model, the corpus, the view filters
//   drawing.js   the query drawings: upload, paste, drop, crop, further views, the mode
//   sketch.js    the sketch canvas (pointer and touch, undo, clear)
//   results.js   searching, pages, the cards, Locarno counts, the search record
//   patent.js    the patent view and compare

import { $ } from "./dom.js";
import { clearDrawings, installCrop, installDrop } from "./drawing.js";
import { loadInfo } from "./header.js";
import { hideMessage } from "./messages.js";
import { openCompare, openPatent, toggleCompare } from "./patent.js";
import { clearResults, exportRecord, moreLike, runFirstPage, showPage } from "./results.js";
import { state } from "./state.js";
import { installSketch } from "./sketch.js";
import { installToken } from "./token.js";

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

function install() {
  installDrop();
  installCrop();
  installSketch();
  installKeys();
  installToken(() => { hideMessage(); loadInfo(); });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); runFirstPage(); });
  $("#reset-button").addEventListener("click", () => {
    $("#query-text").value = $("#query-patent").value = "";
    state.sheet = null;
    clearDrawings();
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
  for (const close of document.querySelectorAll("[data-close]")) {
    close.addEventListener("click", () => close.closest("dialog").close());
  }
  loadInfo();
  // The header follows a rollout: the live model can change while the page is open.
  setInterval(() => { if (state.info) loadInfo(); }, 30000);
}

install();
