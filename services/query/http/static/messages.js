// The one message banner: a kind per state (tests and styles read data-kind).

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { openToken } from "./token.js";

// One message per kind the server sends (patentclip/errors.py ERROR_ANSWERS and
// edge.py); a test checks that every kind of the server has one here.
export const MESSAGES = {
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

export function showMessage(kind, detail) {
  const box = $("#message");
  box.dataset.kind = kind;
  box.textContent = `${MESSAGES[kind] || "Something went wrong."} ${detail || ""}`.trim();
  box.hidden = false;
}

export function hideMessage() {
  const box = $("#message");
  box.hidden = true;
  delete box.dataset.kind;
}

export function report(error) {
  if (!(error instanceof ApiError)) { showMessage("internal", String(error)); return; }
  showMessage(error.kind, error.message);
  if (error.kind === "auth" || error.kind === "permission") openToken();
}
