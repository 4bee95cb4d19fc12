// The header: the live model and the corpus (it follows a rollout), and the view filters the
// server offers.

import { api } from "./api.js";
import { $, checkbox } from "./dom.js";
import { hideMessage, report } from "./messages.js";
import { runFirstPage } from "./results.js";
import { state } from "./state.js";

export async function loadInfo() {
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
