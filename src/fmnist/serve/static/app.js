// The page: pick, drop or draw a picture -> POST /predict -> the processed 28x28 and top-3 bars;
// a gallery from GET /samples. Only this server is contacted (no CDN; works offline).
"use strict";

const $ = (selector) => document.querySelector(selector);
let limits = { max_upload_bytes: Infinity };

function errorText(body, response) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `the server answered HTTP ${response.status}`;
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error(errorText(body, response));
  return body;
}

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(prediction) {
  $("#processed").src = `data:image/png;base64,${prediction.processed_png}`;
  const bars = $("#bars");
  bars.replaceChildren();
  for (const t of prediction.top) {
    const item = el("li", "bar");
    item.dataset.class = t.class;
    const name = el("div", "name");
    name.append(el("span", "label", t.class), el("span", "pct", `${(100 * t.probability).toFixed(1)}%`));
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(0.5, 100 * t.probability)}%`;
    track.append(fill);
    item.append(name, track);
    bars.append(item);
  }
  const result = $("#result");
  result.dataset.label = prediction.label;
  result.dataset.abstain = prediction.abstain ? "yes" : "no";
  $("#abstain").hidden = !prediction.abstain;
  result.hidden = false;
}

async function classify(blob, name) {
  if (blob.size > limits.max_upload_bytes) {
    setStatus(`${name} is ${(blob.size / 1048576).toFixed(1)} MiB; the limit is ${(limits.max_upload_bytes / 1048576).toFixed(1)} MiB`, true);
    return;
  }
  const form = new FormData();
  form.append("files", blob, name);
  setStatus(`Classifying ${name}…`);
  try {
    const out = await api("/predict?top_k=3", { method: "POST", body: form });
    const p = out.predictions[0];
    show(p);
    const verdict = p.abstain ? `not one of the ten classes? (best guess ${p.label}` : `${p.label} (`;
    setStatus(`${name}: ${verdict}${(100 * p.probability).toFixed(1)}%)`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function setupPicker() {
  const input = $("#file");
  const drop = $("#drop");
  input.addEventListener("change", () => {
    if (input.files.length) classify(input.files[0], input.files[0].name);
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) classify(file, file.name);
  });
}

function setupCanvas() {
  // Dark strokes on white, like a pen on paper: the server inverts and trims it as it does a photo.
  const canvas = $("#canvas");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = 18;
  ctx.strokeStyle = "#000";
  let drawing = false;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    if (canvas.setPointerCapture && e.pointerId !== undefined) {
      try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointers */ }
    }
    const [x, y] = point(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    canvas.toBlob((blob) => classify(blob, "drawing.png"), "image/png");
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  $("#clear").addEventListener("click", () => {
    clear();
    $("#result").hidden = true;
    $("#bars").replaceChildren();
    setStatus("Canvas cleared.");
  });
}

async function loadGallery() {
  const gallery = $("#gallery");
  const status = $("#gallery-status");
  status.textContent = "Loading…";
  status.className = "muted";
  try {
    const out = await api("/samples?n=12");
    gallery.replaceChildren();
    let right = 0;
    for (const s of out.samples) {
      const card = el("figure", "card");
      card.dataset.index = s.index;
      const img = el("img");
      img.src = `data:image/png;base64,${s.image_png}`;
      img.alt = `test image ${s.index}: ${s.true}`;
      const caption = el("figcaption");
      caption.append(el("div", "true", `true: ${s.true}`),
        el("div", `pred ${s.correct ? "good" : "bad"}`, `predicted: ${s.predicted} ${(100 * s.probability).toFixed(0)}%`));
      card.append(img, caption);
      gallery.append(card);
      if (s.correct) right += 1;
    }
    status.textContent = `${right} of ${out.samples.length} right (test split, data ${out.data_fingerprint}).`;
  } catch (error) {
    gallery.replaceChildren();
    status.textContent = error.message;
    status.className = "error";
  }
}

async function loadHealth() {
  try {
    const h = await api("/health");
    limits = h.limits;
    const acc = h.test_accuracy === null ? "not evaluated" : `test accuracy ${(100 * h.test_accuracy).toFixed(2)}%`;
    $("#model-info").textContent = `Model ${h.arch} (${h.backend}) trained on ${h.dataset}, ${acc}, data ${h.data_fingerprint}.`;
  } catch (error) {
    $("#model-info").textContent = `Model information unavailable: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupPicker();
  setupCanvas();
  $("#more").addEventListener("click", loadGallery);
  loadHealth();
  loadGallery();
});
