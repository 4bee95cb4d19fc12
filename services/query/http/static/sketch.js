// Sketch mode: strokes drawn on a canvas with a pointer, a finger or a pen (Pointer Events:
// one code path for mouse and touch), with undo and clear. "Search this sketch" makes the
// strokes a PNG drawing: the query's first drawing, in mode "sketch", searched like a drawing.

import { $ } from "./dom.js";
import { takeFile } from "./drawing.js";
import { runFirstPage } from "./results.js";

const strokes = [];  // each a list of [x, y] in canvas pixels
const LINE = 6;

function redraw() {
  const canvas = $("#sketch-canvas");
  const pen = canvas.getContext("2d");
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  Object.assign(pen, { strokeStyle: "#000", lineWidth: LINE, lineCap: "round", lineJoin: "round" });
  for (const stroke of strokes) {
    pen.beginPath();
    stroke.forEach(([x, y], i) => (i ? pen.lineTo(x, y) : pen.moveTo(x, y)));
    if (stroke.length === 1) pen.lineTo(stroke[0][0] + 0.1, stroke[0][1]);  // a dot
    pen.stroke();
  }
  $("#sketch-undo").disabled = $("#sketch-clear").disabled = $("#sketch-use").disabled =
    !strokes.length;
  $("#sketch-count").textContent = `${strokes.length} stroke${strokes.length === 1 ? "" : "s"}`;
}

function point(canvas, event) {
  const r = canvas.getBoundingClientRect();
  return [(event.clientX - r.left) * canvas.width / r.width,
          (event.clientY - r.top) * canvas.height / r.height];
}

export function installSketch() {
  const canvas = $("#sketch-canvas");
  let drawing = null;
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = [point(canvas, event)];
    strokes.push(drawing);
    redraw();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    drawing.push(point(canvas, event));
    redraw();
  });
  const end = () => { drawing = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("#sketch-button").addEventListener("click", () => { redraw(); $("#sketch-view").showModal(); });
  $("#sketch-undo").addEventListener("click", () => { strokes.pop(); redraw(); });
  $("#sketch-clear").addEventListener("click", () => { strokes.length = 0; redraw(); });
  document.addEventListener("keydown", (event) => {
    if ($("#sketch-view").open && (event.ctrlKey || event.metaKey) && event.key === "z") {
      event.preventDefault();
      strokes.pop();
      redraw();
    }
  });
  $("#sketch-use").addEventListener("click", () => {
    canvas.toBlob(async (blob) => {
      $("#query-mode").value = "sketch";
      await takeFile(new File([blob], "sketch.png", { type: "image/png" }));
      $("#sketch-view").close();
      runFirstPage();
    }, "image/png");
  });
}
