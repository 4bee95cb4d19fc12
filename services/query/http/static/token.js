// The examiner's token: kept in the tab's sessionStorage, asked for when the server wants it.

import { $ } from "./dom.js";
import { state, TOKEN_KEY } from "./state.js";

export function openToken() {
  const dialog = $("#token-view");
  if (!dialog.open) { $("#token-input").value = state.token; dialog.showModal(); }
}

// onChange: what to do with a new token (the header loads again with it).
export function installToken(onChange) {
  $("#token-button").addEventListener("click", openToken);
  $("#token-form").addEventListener("submit", () => {
    state.token = $("#token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    onChange();
  });
}
