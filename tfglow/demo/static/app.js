// The demo page: talks to the JSON endpoints of tfglow/demo/app.py. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, a: null, b: null, alphas: {}, seed: null };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// fetch + JSON; throws Error("<what> failed (status): <server's error>") and shows latency.
async function call(path, options, what) {
  const t0 = performance.now();
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error(`${what}: the server cannot be reached (${e.message})`);
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    body = { error: `HTTP ${response.status} without a JSON body` };
  }
  const roundTrip = performance.now() - t0;
  if (!response.ok) {
    throw new Error(`${what} failed (${response.status}): ${body.error || "unknown error"}`);
  }
  $("latency").textContent =
    `latency of ${what}: model/server ${body.latency_ms.toFixed(1)} ms, round trip ${roundTrip.toFixed(0)} ms`;
  return body;
}

function postJSON(path, obj, what) {
  return call(path, { method: "POST", headers: { "Content-Type": "application/json" },
                      body: JSON.stringify(obj) }, what);
}

// Runs fn now, or once more after the running call ends, so the shown image always belongs to
// the latest slider positions and answers never arrive out of order. <body data-NAME> is
// "busy" until the last call has landed, then "idle" (for tests and scripts driving the page).
function latestOnly(name, fn) {
  let running = false, again = false;
  document.body.dataset[name] = "idle";
  return async function run() {
    if (running) { again = true; return; }
    running = true;
    document.body.dataset[name] = "busy";
    try {
      do { again = false; await fn(); } while (again);
    } finally {
      running = false;
      document.body.dataset[name] = "idle";
    }
  };
}

function setImage(imgId, linkId, url) {
  $(imgId).src = url;
  if (linkId) {
    const link = $(linkId);
    link.href = url;
    link.setAttribute("aria-disabled", "false");
  }
}

function label(selectId) {
  return state.info.model.ycond ? Number($(selectId).value) : null;
}

// ---------------------------------------------------------------------------------- encode

async function upload(which) {
  const input = $(which === "a" ? "file-a" : "file-b");
  const file = input.files[0];
  if (!file) return;
  clearError();
  const y = label("label-a");
  const path = "/api/encode" + (y === null ? "" : `?y=${y}`);
  try {
    const r = await call(path, { method: "POST", body: file,
                                 headers: { "Content-Type": file.type || "application/octet-stream" } },
                         "encode");
    if (which === "a") {
      state.a = r.id;
      $("input-a").src = r.input;
      $("recon-a").src = r.reconstruction;
      const parts = [`${r.bits_per_dim.toFixed(3)} bits/dim`,
                     r.exact ? "reconstruction exact" : "reconstruction not exact"];
      if (r.note) parts.push(r.note);
      $("encode-info").textContent = parts.join(" · ");
    } else {
      state.b = r.id;
      $("input-b").src = r.input;
      $("blend").disabled = false;
    }
    await edit();
  } catch (e) {
    showError(e.message);
  }
}

// ---------------------------------------------------------------------------------- edit

let edit = null;  // set in start(), once <body> exists
const editOnce = async () => {
  if (!state.a) return;
  const t = Number($("blend").value);
  const alphas = {};
  for (const [name, value] of Object.entries(state.alphas)) if (value !== 0) alphas[name] = value;
  const blend = state.b && t > 0 ? { id: state.b, t } : null;
  try {
    const r = await postJSON("/api/edit", { id: state.a, alphas, blend }, "edit");
    setImage("result", "download-result", r.image);
    const moved = Object.keys(alphas).length || blend;
    $("result-caption").textContent = moved ? "edited" : "decode(encode(image)): the input exactly";
  } catch (e) {
    showError(e.message);
  }
};

function buildSliders(directions, range) {
  const box = $("sliders");
  if (!directions.length) return;
  box.textContent = "";
  directions.forEach((d, i) => {
    const row = document.createElement("div");
    row.className = "slider-row";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = d.kind === "label" ? `class ${d.name}` : d.name;
    name.title = name.textContent;
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", id: `slider-${i}`, min: -range, max: range,
                            step: 0.05, value: 0 });
    slider.dataset.direction = d.name;
    slider.setAttribute("aria-label", name.textContent);
    const out = document.createElement("output");
    out.textContent = "0.00";
    slider.addEventListener("input", () => {
      state.alphas[d.name] = Number(slider.value);
      out.textContent = Number(slider.value).toFixed(2);
      clearError();
      edit();
    });
    row.append(name, slider, out);
    box.append(row);
  });
}

function resetSliders() {
  for (const slider of document.querySelectorAll("#sliders input[type=range]")) {
    slider.value = 0;
    slider.nextElementSibling.textContent = "0.00";
  }
  state.alphas = {};
  $("blend").value = 0;
  $("blend-value").textContent = "0.00";
  edit();
}

// ---------------------------------------------------------------------------------- sample

let sample = null;
const sampleOnce = async () => {
  const temperature = Number($("temperature").value);
  try {
    const r = await postJSON("/api/sample", { temperature, seed: state.seed, y: label("label-s") },
                             "sample");
    state.seed = r.seed;
    setImage("sample", "download-sample", r.image);
    $("sample-caption").textContent = `T = ${r.temperature.toFixed(2)}, seed ${r.seed}`;
  } catch (e) {
    showError(e.message);
  }
};

// ---------------------------------------------------------------------------------- start

function fillLabels(selectId, rowId, n) {
  const select = $(selectId);
  for (let k = 0; k < n; k++) select.add(new Option(String(k), String(k)));
  $(rowId).hidden = false;
}

async function start() {
  edit = latestOnly("edit", editOnce);
  sample = latestOnly("sample", sampleOnce);
  try {
    state.info = await call("/api/info", {}, "info");
  } catch (e) {
    showError(e.message);
    return;
  }
  const m = state.info.model;
  const arch = m.n_levels ? `, ${m.n_levels} levels, depth ${m.depth}, width ${m.width}` : "";
  $("model-info").textContent =
    `model: ${m.image_size}x${m.image_size}x${m.channels}${arch}` +
    `${m.ycond ? ", class-conditional" : ""} · ${state.info.directions.length} directions`;
  if (m.ycond) {
    fillLabels("label-a", "label-row", m.n_y);
    fillLabels("label-s", "sample-label-row", m.n_y);
  }
  buildSliders(state.info.directions, state.info.alpha_range);
  $("file-a").addEventListener("change", () => upload("a"));
  $("file-b").addEventListener("change", () => upload("b"));
  $("label-a").addEventListener("change", () => upload("a"));
  $("label-s").addEventListener("change", () => sample());
  $("reset").addEventListener("click", resetSliders);
  $("blend").addEventListener("input", () => {
    $("blend-value").textContent = Number($("blend").value).toFixed(2);
    edit();
  });
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
    sample();
  });
  $("sample-new").addEventListener("click", () => { state.seed = null; sample(); });
  document.body.dataset.ready = "true";
  sample();
}

document.addEventListener("DOMContentLoaded", start);
