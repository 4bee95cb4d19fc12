// The one way the page builds DOM: el(tag, props, ...children). Server values reach the
// screen only as text (textContent) or attributes, never as HTML strings (the CSP's Trusted
// Types refuse them; a test greps every module for HTML sinks).

export const $ = (selector) => document.querySelector(selector);

// props: class, text, data (dataset), on ({event: handler}), and any DOM property
// (id, type, alt, href, ...); attrs sets attributes (aria-label, role).
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { class: className, text, data, on, attrs, ...rest } = props;
  if (className) node.className = className;
  if (text !== undefined && text !== "") node.textContent = text;
  Object.assign(node.dataset, data || {});
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const [event, handler] of Object.entries(on || {})) node.addEventListener(event, handler);
  node.append(...children);
  return node;
}

export const button = (act, text, onClick, props = {}) =>
  el("button", { type: "button", text, data: { act }, on: { click: onClick }, ...props });

export function checkbox(id, value, text, count, onChange, checked = false) {
  return el("label", {},
    el("input", { type: "checkbox", id, value, checked, on: { change: onChange } }),
    el("span", { text }),
    ...(count !== "" ? [el("span", { class: "count", text: String(count) })] : []));
}

// A drawing with boxes over it (fractions of the sheet: [left, top, right, bottom]), each
// with its label: where a hit matched, where each figure of a sheet is. DOM, never HTML.
export function framed(img, boxes) {
  const marks = boxes.filter((b) => b.region).map(({ region, label, kind }) => {
    const [left, top, right, bottom] = region.map(Number);
    const mark = el("span", { class: `mark ${kind}`, title: label,
                              attrs: { role: "img", "aria-label": label } });
    Object.assign(mark.style, { left: `${left * 100}%`, top: `${top * 100}%`,
                                width: `${(right - left) * 100}%`,
                                height: `${(bottom - top) * 100}%` });
    mark.dataset.region = region.join(",");
    return mark;
  });
  return el("span", { class: "framed" }, img, ...marks);
}
