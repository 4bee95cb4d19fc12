// The query drawing: upload, paste or drop, a preview rendered by the server (TIFF included),
// then a crop by pointer or keyboard.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { hideMessage, report } from "./messages.js";
import { updateCompare } from "./patent.js";
import { state } from "./state.js";

export async function takeFile(file) {
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

export function removeDrawing() {
  if (state.image) URL.revokeObjectURL(state.image.previewUrl);
  state.image = null;
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

export function installDrop() {
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
