// camloc serve: the page. Plain JS, no build step, nothing fetched from elsewhere.
// Maps come from POST /api/explain as PNGs holding a 16-bit level of the normalised map (R = high byte,
// G = low byte) and the map's [min, max] before normalisation. The server's box is authoritative; the threshold
// slider redraws the box here with the same rule (camloc.boxes): keep pixels >= t * max ("max") or
// >= min + t * (max - min) ("minmax"), then the box around the largest 8-connected component.
"use strict";

const $ = (id) => document.getElementById(id);
const BOX_COLOR = "rgb(0, 255, 127)";

const state = {
  defaults: null, labels: [], lut: null,
  files: [],          // [{file, name, bitmap, record, error}]
  current: -1,
  main: null,         // {record, sel}
  compare: null,      // {record, sel, method}
  levels: new Map(),  // "<request id>/<rank>" -> Uint16Array
  requestId: 0,
};

// ------------------------------------------------------------------------------------------------ box rule
function maskCut(range, t, mode) {
  // The rule's cut on the normalised map (q / 65535), or null when no pixel passes / every pixel passes.
  const [lo, hi] = range;
  if (mode === "max") {
    if (!(hi > 0)) return { none: true };
    if (!(hi > lo)) return t <= 1 ? { all: true } : { none: true };
    return { cut: (t * hi - lo) / (hi - lo) };
  }
  if (!(hi > lo)) return { none: true };
  return { cut: t };
}

function boxFromLevels(levels, width, height, range, t, mode) {
  // [x0, y0, x1, y1] (x1, y1 exclusive) around the largest 8-connected component of the kept pixels.
  const c = maskCut(range, t, mode);
  if (c.none) return [0, 0, 0, 0];
  if (c.all) return [0, 0, width, height];
  const qcut = c.cut * 65535;
  const n = width * height;
  const label = new Int32Array(n);   // 0: not visited
  const stack = new Int32Array(n);
  let best = null, bestArea = 0, next = 0;
  for (let start = 0; start < n; start++) {
    if (label[start] !== 0 || !(levels[start] >= qcut)) continue;
    next += 1;
    let top = 0, area = 0;
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    stack[top++] = start;
    label[start] = next;
    while (top > 0) {
      const p = stack[--top];
      const x = p % width, y = (p - x) / width;
      area += 1;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width || (dx === 0 && dy === 0)) continue;
          const q = yy * width + xx;
          if (label[q] === 0 && levels[q] >= qcut) { label[q] = next; stack[top++] = q; }
        }
      }
    }
    if (area > bestArea) { bestArea = area; best = [x0, y0, x1 + 1, y1 + 1]; }
  }
  return best || [0, 0, 0, 0];
}

// ------------------------------------------------------------------------------------------------- helpers
function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${url}: HTTP ${r.status}`);
  return body;
}

function classIndex(text) {
  // "281: tabby" / "tabby" / "281" -> class index, or -1.
  const s = (text || "").trim();
  if (!s) return -1;
  const m = s.match(/^(\d+)\s*(:|$)/);
  if (m) return Number(m[1]) < state.labels.length ? Number(m[1]) : -1;
  const lower = s.toLowerCase();
  let i = state.labels.findIndex((l) => l.toLowerCase() === lower);
  if (i < 0) i = state.labels.findIndex((l) => l.toLowerCase().includes(lower));
  return i;
}

function options(extra = {}) {
  const o = {
    method: $("method").value,
    top_k: $("top-k").value,
    map_sizes: $("map-sizes").value,
    relu: $("relu").checked ? "true" : "false",
    threshold: state.defaults.threshold,
    threshold_mode: state.defaults.threshold_mode,
  };
  return Object.assign(o, extra);
}

async function explainFile(entry, extra = {}) {
  // One request at a time from the buttons that start one: they are disabled meanwhile (aria-busy on the result).
  const buttons = ["class-go", "compare-go"].map($);
  buttons.forEach((b) => { b.disabled = true; });
  $("result").setAttribute("aria-busy", "true");
  try {
    return await postExplain(entry, extra);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    $("result").removeAttribute("aria-busy");
  }
}

async function postExplain(entry, extra) {
  const form = new FormData();
  form.append("files", entry.file, entry.name);
  for (const [k, v] of Object.entries(options(extra))) if (v !== "" && v != null) form.append(k, v);
  const r = await fetch("/api/explain", { method: "POST", body: form });
  let body;
  try { body = await r.json(); } catch { throw new Error(`${entry.name}: HTTP ${r.status}`); }
  if (!r.ok) {
    const retry = r.headers.get("Retry-After");
    throw new Error(body.error + (retry ? ` (retry in ${retry} s)` : ""));
  }
  if (!body.results.length) throw new Error(body.errors[0].error);
  const record = body.results[0];
  record._id = ++state.requestId;
  await Promise.all(record.predictions.map(async (p, k) => {
    state.levels.set(`${record._id}/${k}`, await decodeLevels(p.map, record.width, record.height));
  }));
  return record;
}

async function decodeLevels(b64, width, height) {
  // The map PNG -> Uint16Array of q = R * 256 + G, read without colour conversion.
  const blob = await (await fetch(`data:image/png;base64,${b64}`)).blob();
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const cv = new OffscreenCanvas(width, height);
  const ctx = cv.getContext("2d", { colorSpace: "srgb", willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  const px = ctx.getImageData(0, 0, width, height).data;
  const out = new Uint16Array(width * height);
  for (let i = 0, j = 0; i < out.length; i++, j += 4) out[i] = (px[j] << 8) | px[j + 1];
  return out;
}

// -------------------------------------------------------------------------------------------------- drawing
function currentRule() {
  return { t: Number($("threshold").value), mode: $("threshold-mode").value };
}

function boxOf(view) {
  // The server's box when the slider is at the server's rule (authoritative), else the page's.
  const rec = view.record, pred = rec.predictions[view.sel];
  const { t, mode } = currentRule();
  if (t === rec.settings.threshold && mode === rec.settings.threshold_mode) return { box: pred.box, source: "server" };
  const levels = state.levels.get(`${rec._id}/${view.sel}`);
  return { box: boxFromLevels(levels, rec.width, rec.height, pred.map_range, t, mode), source: "page" };
}

function draw(canvas, view, caption) {
  const entry = state.files[state.current];
  const rec = view.record, pred = rec.predictions[view.sel];
  const w = rec.width, h = rec.height;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(entry.bitmap, 0, 0, w, h);
  const levels = state.levels.get(`${rec._id}/${view.sel}`);
  const heat = new ImageData(w, h);
  for (let i = 0, j = 0; i < levels.length; i++, j += 4) {
    const c = state.lut[Math.min(255, Math.floor((levels[i] * 255) / 65535))];
    heat.data[j] = c[0]; heat.data[j + 1] = c[1]; heat.data[j + 2] = c[2]; heat.data[j + 3] = 255;
  }
  const layer = new OffscreenCanvas(w, h);
  layer.getContext("2d").putImageData(heat, 0, 0);
  ctx.globalAlpha = Number($("opacity").value);
  ctx.drawImage(layer, 0, 0);
  ctx.globalAlpha = 1;
  const scale = Math.max(w, h) / 400;
  const { box, source } = boxOf(view);
  canvas.dataset.box = box.join(",");
  canvas.dataset.boxSource = source;
  if ($("boxes").checked && box[2] > box[0] && box[3] > box[1]) {
    const lw = Math.max(1, Math.round(2 * scale));
    ctx.strokeStyle = BOX_COLOR;
    ctx.lineWidth = lw;
    ctx.strokeRect(box[0] + lw / 2, box[1] + lw / 2, box[2] - box[0] - lw, box[3] - box[1] - lw);
  }
  const text = `${pred.label} ${(pred.score * 100).toFixed(1)}%`;
  ctx.font = `${Math.max(12, Math.round(14 * Math.max(scale, 0.8)))}px sans-serif`;
  const tw = ctx.measureText(text).width;
  const th = Math.max(12, Math.round(14 * Math.max(scale, 0.8)));
  ctx.fillStyle = "black";
  ctx.fillRect(0, 0, tw + 12, th + 10);
  ctx.fillStyle = "white";
  ctx.fillText(text, 6, th + 2);
  caption.textContent = `${pred.label} (class ${pred.class_index}), ${rec.settings.method}, score ` +
    `${(pred.score * 100).toFixed(1)}%, box [${box.join(", ")}]` + (source === "page" ? " (redrawn in the page)" : "");
  canvas.setAttribute("aria-label", `${rec.settings.method} map of ${pred.label} over ${rec.image}`);
}

function render() {
  const entry = state.files[state.current];
  $("result").hidden = !entry || !entry.record;
  if (!entry || !entry.record || !state.main) return;
  draw($("main-canvas"), state.main, $("main-caption"));
  $("compare-view").hidden = !state.compare;
  if (state.compare) draw($("compare-canvas"), state.compare, $("compare-caption"));
  const { t, mode } = currentRule();
  const rec = entry.record;
  $("box-note").textContent = t === rec.settings.threshold && mode === rec.settings.threshold_mode
    ? `Boxes: the server's (threshold ${rec.settings.threshold}, rule "${rec.settings.threshold_mode}").`
    : `Boxes redrawn in the page at threshold ${t.toFixed(2)} ("${mode}"); the server's box at ` +
      `${rec.settings.threshold} is the authoritative one (in the JSON).`;
}

function renderTopk() {
  const list = $("topk");
  list.replaceChildren();
  const entry = state.files[state.current];
  if (!entry || !entry.record) return;
  entry.record.predictions.forEach((p, k) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    const name = document.createElement("span");
    name.textContent = p.label;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(p.score * 100).toFixed(1)}%`;
    b.append(name, score);
    const pressed = state.main && state.main.record === entry.record && state.main.sel === k;
    b.setAttribute("aria-pressed", pressed ? "true" : "false");
    b.addEventListener("click", () => { state.main = { record: entry.record, sel: k }; renderTopk(); render(); });
    li.append(b);
    list.append(li);
  });
}

function renderThumbs() {
  const ul = $("thumbs");
  ul.replaceChildren();
  if (state.files.length < 2) return;
  state.files.forEach((e, i) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = e.name + (e.error ? " (failed)" : e.record ? "" : " …");
    b.title = e.error || e.name;
    if (e.error) b.classList.add("failed");
    b.setAttribute("aria-current", i === state.current ? "true" : "false");
    b.addEventListener("click", () => select(i));
    li.append(b);
    ul.append(li);
  });
}

function select(i) {
  state.current = i;
  const e = state.files[i];
  state.main = e && e.record ? { record: e.record, sel: 0 } : null;
  state.compare = null;
  if (e && e.error) setStatus(e.error, true);
  else if (e && e.record) setStatus(`${e.name}: ${e.record.predictions[0].label}`);
  renderThumbs(); renderTopk(); render();
}

// --------------------------------------------------------------------------------------------------- actions
async function addFiles(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  state.files = files.map((file) => ({ file, name: file.name || "image", bitmap: null, record: null, error: null }));
  state.levels.clear();
  state.current = 0;
  renderThumbs();
  for (let i = 0; i < state.files.length; i++) {
    const e = state.files[i];
    setStatus(`explaining ${e.name} (${i + 1} of ${state.files.length})…`);
    try {
      e.bitmap = await createImageBitmap(e.file, { imageOrientation: "from-image" }).catch(() => null);
      e.record = await explainFile(e);
    } catch (err) {
      e.error = err.message;
    }
    if (i === state.current) select(i); else renderThumbs();
  }
  select(state.current);  // its status line, now that every image is done
  const failed = state.files.filter((e) => e.error).length;
  if (failed && state.files.length > 1) setStatus(`${failed} of ${state.files.length} image(s) failed; the others are shown`, true);
}

async function reexplain() {
  const e = state.files[state.current];
  if (!e || !e.bitmap) return;
  setStatus(`explaining ${e.name}…`);
  try {
    e.record = await explainFile(e);
    e.error = null;
    select(state.current);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function mapClass() {
  const e = state.files[state.current];
  if (!e || !e.record) { setStatus("choose an image first", true); return; }
  const idx = classIndex($("class-search").value);
  if (idx < 0) { setStatus(`no class matches "${$("class-search").value}"`, true); return; }
  setStatus(`mapping ${state.labels[idx]}…`);
  try {
    const rec = await explainFile(e, { classes: String(idx) });
    state.main = { record: rec, sel: 0 };
    setStatus(`${e.name}: map of ${state.labels[idx]} (class ${idx}), score ${(rec.predictions[0].score * 100).toFixed(2)}%`);
    renderTopk(); render();
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function compare() {
  const e = state.files[state.current];
  if (!e || !state.main) { setStatus("choose an image first", true); return; }
  const text = $("compare-class").value;
  const idx = text.trim() ? classIndex(text) : state.main.record.predictions[state.main.sel].class_index;
  if (idx < 0) { setStatus(`no class matches "${text}"`, true); return; }
  const method = $("compare-method").value;
  setStatus(`${method} map of ${state.labels[idx]}…`);
  try {
    const rec = await explainFile(e, { classes: String(idx), method });
    state.compare = { record: rec, sel: 0 };
    setStatus(`side by side: ${state.main.record.settings.method} and ${method}`);
    render();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function stem() {
  const name = state.files[state.current].name;
  return name.replace(/\.[^.]*$/, "") || "image";
}

function downloadJSON() {
  if (!state.main) return;
  // The CLI's record (maps left out: they are pictures; map_range kept) of the view on the left.
  const rec = JSON.parse(JSON.stringify(state.main.record, (k, v) => (k === "map" || k === "_id" ? undefined : v)));
  download(new Blob([JSON.stringify(rec, null, 2) + "\n"], { type: "application/json" }), `${stem()}.json`);
}

function downloadPNG() {
  if (!state.main) return;
  const pred = state.main.record.predictions[state.main.sel];
  $("main-canvas").toBlob((blob) => download(blob, `${stem()}_${pred.class_index}_overlay.png`), "image/png");
}

// ---------------------------------------------------------------------------------------------------- start
async function start() {
  const [models, labels] = await Promise.all([getJSON("/api/models"), getJSON("/api/labels")]);
  state.defaults = models.defaults;
  state.labels = labels.labels;
  state.lut = (await getJSON("/api/colormap?name=inferno")).lut;
  const model = models.models.find((m) => m.default);
  $("model-line").textContent = `${model.name}, ${model.num_classes} classes, on ${model.device}`;
  for (const sel of [$("method"), $("compare-method")]) {
    for (const m of models.methods) sel.append(new Option(m, m));
  }
  $("method").value = models.defaults.method;
  $("compare-method").value = models.methods.includes("gradcam") ? "gradcam" : models.methods[0];
  for (const m of models.threshold_modes) $("threshold-mode").append(new Option(m, m));
  $("threshold-mode").value = models.defaults.threshold_mode;
  $("threshold").value = models.defaults.threshold;
  $("threshold-value").value = Number(models.defaults.threshold).toFixed(2);
  $("top-k").max = models.limits.max_top_k;
  const dl = $("labels");
  state.labels.forEach((l, i) => dl.append(new Option(`${i}: ${l}`)));

  $("file-input").addEventListener("change", (ev) => addFiles(ev.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); addFiles(ev.dataTransfer.files); });
  for (const id of ["method", "top-k", "map-sizes", "relu"]) $(id).addEventListener("change", reexplain);
  $("threshold").addEventListener("input", () => { $("threshold-value").value = Number($("threshold").value).toFixed(2); render(); });
  $("threshold-mode").addEventListener("change", render);
  $("opacity").addEventListener("input", () => { $("opacity-value").value = Number($("opacity").value).toFixed(2); render(); });
  $("boxes").addEventListener("change", render);
  $("class-go").addEventListener("click", mapClass);
  $("class-search").addEventListener("keydown", (ev) => { if (ev.key === "Enter") mapClass(); });
  $("compare-go").addEventListener("click", compare);
  $("compare-off").addEventListener("click", () => { state.compare = null; render(); });
  $("download-json").addEventListener("click", downloadJSON);
  $("download-png").addEventListener("click", downloadPNG);
  setStatus("ready: drop or choose images");
  document.body.dataset.ready = "true";
}

// For the browser test: the page's box rule on any shown prediction.
window.camloc = {
  state,
  boxFromLevels,
  pageBox(record, k, t, mode) {
    return boxFromLevels(state.levels.get(`${record._id}/${k}`), record.width, record.height,
      record.predictions[k].map_range, t, mode);
  },
};

start().catch((err) => setStatus(`cannot start: ${err.message}`, true));
