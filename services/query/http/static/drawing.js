// The query drawings: upload, paste or drop (several files: the first is the drawing, the
// others further views of the design), a preview rendered by the server (TIFF included; for
// a photo, the line drawing the search uses), a crop of the first by pointer or keyboard,
// and the further views reordered or removed.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { hideMessage, report, showMessage } from "./messages.js";
import { updateCompare } from "./patent.js";
import { state } from "./state.js";

const mode = () => $("#query-mode").value;

// The server's preview of a drawing's bytes in the chosen mode, as a blob: URL.
async function previewUrl(raw, name) {
  const blob = await (await api(`/api/preview?mode=${encodeURIComponent(mode())}`, {
    method: "POST", body: raw,
    headers: { "Content-Type": "application/octet-stream", "X-File-Name": name } })).blob();
  return URL.createObjectURL(blob);
}

async function readDrawing(file) {
  const raw = new Uint8Array(await file.arrayBuffer());
  const name = file.name || "pasted drawing";
  return { b64: toBase64(raw), raw, name, bytes: raw.length, previewUrl: await previewUrl(raw, name) };
}

const maxDrawings = () => state.info?.max_drawings || 7;

// Several files at once: the first is the drawing when there is none, the rest further views.
export async function takeFiles(files) {
  const list = [...files];
  if (!list.length) return;
  if (!state.image) await takeFile(list.shift());
  for (const file of list) await addView(file);
}

export async function addView(file) {
  if (!state.image) { await takeFile(file); return; }
  hideMessage();
  if (1 + state.views.length >= maxDrawings()) {
    showMessage("invalid", `At most ${maxDrawings()} drawings in one query (the views of one design).`);
    return;
  }
  try {
    state.views.push(await readDrawing(file));
  } catch (error) { report(error); return; }
  renderViews();
}

function renderViews() {
  const move = (from, to) => {
    const [view] = state.views.splice(from, 1);
    state.views.splice(to, 0, view);
    renderViews();
  };
  const items = state.views.map((view, i) => {
    const label = `view ${i + 2}: ${view.name}`;
    const act = (name, text, onClick, disabled = false) => el("button", {
      type: "button", class: "ghost", text, disabled, data: { act: name },
      on: { click: onClick }, attrs: { "aria-label": `${name.replace("-", " ")} ${label}` } });
    return el("li", { class: "view-item", data: { name: view.name } },
      el("img", { src: view.previewUrl, alt: label }),
      el("span", { class: "muted", text: label }),
      act("move-earlier", "◀", () => move(i, i - 1), i === 0),
      act("move-later", "▶", () => move(i, i + 1), i === state.views.length - 1),
      act("use-first", "First", () => useFirst(i)),
      act("remove-view", "✕", () => { URL.revokeObjectURL(view.previewUrl); state.views.splice(i, 1); renderViews(); }));
  });
  $("#more-views").replaceChildren(...items);
  $("#views-note").textContent = state.views.length
    ? `${1 + state.views.length} drawings: each is searched, and a design matching several ranks first`
    : "";
}

// A further view becomes the (croppable) first drawing; the first takes its place.
function useFirst(i) {
  const view = state.views[i];
  state.views[i] = state.image;
  state.image = view;
  $("#query-preview").src = state.image.previewUrl;
  setCrop(null);
  renderViews();
  updateCompare();
}

// The mode changed: previews again, each as the search will see it.
export async function modeChanged() {
  try {
    for (const drawing of [state.image, ...state.views].filter(Boolean)) {
      const old = drawing.previewUrl;
      drawing.previewUrl = await previewUrl(drawing.raw, drawing.name);
      URL.revokeObjectURL(old);
    }
  } catch (error) { report(error); }
  if (state.image) $("#query-preview").src = state.image.previewUrl;
  renderViews();
}

export async function takeFile(file) {
  if (!file) return;
  hideMessage();
  let drawing;
  try {
    drawing = await readDrawing(file);
  } catch (error) { removeDrawing(); report(error); return; }
  if (state.image) URL.revokeObjectURL(state.image.previewUrl);
  state.image = drawing;
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

export function removeDrawing() {
  if (state.image) URL.revokeObjectURL(state.image.previewUrl);
  state.image = null;
  if (state.views.length) {  // the next view becomes the drawing
    state.image = state.views.shift();
    $("#query-preview").src = state.image.previewUrl;
    setCrop(null);
    renderViews();
    updateCompare();
    return;
  }
  setCrop(null);
  $("#crop-box").hidden = true;
  $("#drawing-tools").hidden = true;
  $("#drop-hint").hidden = false;
  $("#file-input").value = "";
  updateCompare();
}

export function setCrop(crop) {
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

export function installCrop() {
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
export function keyboardCrop(crop, key, shift) {
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

export function clearDrawings() {
  for (const view of state.views) URL.revokeObjectURL(view.previewUrl);
  state.views = [];
  renderViews();
  removeDrawing();
}

export function installDrop() {
  const zone = $("#drop-zone");
  $("#choose-file").addEventListener("click", () => $("#file-input").click());
  $("#file-input").addEventListener("change", (e) => takeFiles(e.target.files));
  $("#add-view").addEventListener("click", () => $("#view-input").click());
  $("#view-input").addEventListener("change", async (e) => {
    for (const file of [...e.target.files]) await addView(file);
    e.target.value = "";
  });
  $("#query-mode").addEventListener("change", modeChanged);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    takeFiles(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (file) { e.preventDefault(); takeFile(file); }
  });
  $("#clear-crop").addEventListener("click", () => setCrop(null));
  $("#remove-drawing").addEventListener("click", removeDrawing);
}

// The query as searched: the preview, cut to the crop when there is one.
export function queryImage(img) {
  const crop = state.crop;
  if (!crop) { img.src = state.image.previewUrl; return; }
  const source = $("#query-preview");
  const canvas = el("canvas");
  const [w, h] = [source.naturalWidth, source.naturalHeight];
  canvas.width = Math.max(1, Math.round((crop.right - crop.left) * w));
  canvas.height = Math.max(1, Math.round((crop.bottom - crop.top) * h));
  canvas.getContext("2d").drawImage(source, crop.left * w, crop.top * h, canvas.width,
                                    canvas.height, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => { img.src = URL.createObjectURL(blob); });
}
