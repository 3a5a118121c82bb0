// attnlm explore: the page. Plain JavaScript and SVG; every number comes from the server's JSON API,
// which computes it with attnlm's own model code. Nothing here recomputes attention.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = {
  info: null,        // /api/info
  analysis: null,    // /api/analyze for the current text
  layer: 0,
  head: 0,           // a head number, or "all"
  words: false,
  query: null,       // the pinned query position (characters, or words in word mode)
  hover: null,       // the query under the mouse, shown while hovering
  tab: "lines",
  training: null,    // /api/training
  epoch: null,       // /api/epoch for the slider's epoch
  epochQuery: null,
  requests: 0,
};

// ----- talking to the server -----------------------------------------------------------------
async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  let data;
  try { data = await response.json(); } catch (e) { data = { error: `the server answered ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
  for (const id of ["strip", "view-lines", "view-heatmap", "view-pipeline"]) $(id).classList.toggle("stale", !!message);
}

// ----- small drawing helpers ---------------------------------------------------------------------
// The server's Content-Security-Policy refuses style attributes (they are how injected markup would restyle
// the page); styles set through the CSSOM are the page's own script's and allowed.
function setAttributes(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
}

function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVGNS, tag);
  setAttributes(node, attrs);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

// White (0) to a deep blue (1), the colours of `attnlm attention`; small weights lifted so 0.05 shows.
function shade(w) {
  const t = Math.pow(Math.max(0, Math.min(1, w)), 0.6);
  const mix = (c) => Math.round(255 + (c - 255) * t);
  return `rgb(${mix(8)},${mix(48)},${mix(107)})`;
}

const HEAD_COLOURS = ["#08519c", "#a63603", "#006d2c", "#54278f", "#b30059", "#7f2704", "#00441b", "#3f007d"];
// Fixed decimals, and never "-0.00": a tiny negative number reads as zero.
const fmt = (x, d = 2) => (x === null || x === undefined) ? "" : Number(x).toFixed(d).replace(/^-(0\.0*)$/, "$1");

// ----- what to draw: characters or words, one head or all ---------------------------------------
function heads() {
  return state.head === "all" ? [...Array(state.info.model.n_head).keys()] : [state.head];
}

function view(source) {
  // {labels, matrices: [{head, w}]} for the chosen layer/heads, in characters or words.
  if (state.words && source.words) {
    return { labels: source.words.labels,
             matrices: heads().map((h) => ({ head: h, w: source.words.weights[state.layer][h] })) };
  }
  return { labels: source.labels, matrices: heads().map((h) => ({ head: h, w: source.weights[state.layer][h] })) };
}

function wordOf(position) {
  const groups = state.analysis.words.positions;
  return Math.max(0, groups.findIndex((g) => g.includes(position)));
}

// ----- the attention lines (attention read as a directed graph) ----------------------------------
function drawLines(svg, v, query, onPick) {
  svg.replaceChildren();
  const n = v.labels.length;
  const wide = Math.max(...v.labels.map((l) => l.length));
  const cell = Math.max(26, 10 * wide + 12);
  const rowHeight = 60 + Math.min(200, 12 * n + 40);
  const width = 40 + n * cell;
  svg.setAttribute("width", width);
  svg.setAttribute("height", v.matrices.length * rowHeight + 10);
  const q = Math.min(query ?? n - 1, n - 1);
  v.matrices.forEach(({ head, w }, k) => {
    const g = el("g", { class: "head", "data-head": head, transform: `translate(20, ${k * rowHeight})` }, svg);
    const base = rowHeight - 34;
    const x = (i) => i * cell + cell / 2;
    if (v.matrices.length > 1 || state.head === "all") {
      el("text", { class: "headname", x: 0, y: 14 }, g, `layer ${state.layer}, head ${head}`);
    }
    const colour = HEAD_COLOURS[head % HEAD_COLOURS.length];
    // Every earlier character (and itself) with a line whose width and opacity follow the weight.
    const row = w[q];
    const edges = el("g", { class: "edges" }, g);
    const top = base - 20;  // where lines meet the characters
    for (let j = 0; j <= q; j++) {
      const weight = row[j];
      // Arcs rise with distance (never past the top), so lines to nearer characters nest inside farther ones.
      const lift = j === q ? 26 : (base - 34) * Math.sqrt((q - j) / Math.max(1, n - 1));
      const d = j === q
        ? `M ${x(q) - 6} ${top} C ${x(q) - 18} ${top - lift} ${x(q) + 18} ${top - lift} ${x(q) + 6} ${top}`
        : `M ${x(q)} ${top} Q ${(x(q) + x(j)) / 2} ${top - 2 * lift} ${x(j)} ${top}`;
      const path = el("path", {
        class: "edge", d, stroke: colour, "stroke-width": (0.6 + 9 * weight).toFixed(2),
        "stroke-opacity": (0.12 + 0.88 * weight).toFixed(3),
        "data-from": q, "data-to": j, "data-head": head, "data-weight": weight,
      }, edges);
      el("title", {}, path, `${v.labels[q]} → ${v.labels[j]}: ${fmt(weight, 3)}`);
      // The weight is written just above the character it lands on: one label per character, none overlap.
      el("text", { class: "weight", x: x(j), y: top - (j === q ? 0 : 2), "data-to": j,
                   "fill-opacity": (0.45 + 0.55 * Math.min(1, 4 * weight)).toFixed(2) }, edges, short(weight));
    }
    v.labels.forEach((label, i) => {
      const cg = el("g", { class: "char", "data-index": i }, g);
      el("rect", { class: "cell" + (i === q ? " query" : ""), x: x(i) - cell / 2 + 1, y: base - 14, width: cell - 2, height: 24, rx: 3 }, cg);
      el("text", { class: "char", x: x(i), y: base + 3 }, cg, label);
      if (onPick) {
        cg.addEventListener("mouseenter", () => onPick(i, false));
        cg.addEventListener("click", () => onPick(i, true));
      }
    });
  });
  if (onPick) svg.onmouseleave = () => onPick(null, false);
}

function weightTable(container, v, query) {
  // The query's row of weights as numbers, largest first: what the lines show, in a list.
  container.replaceChildren();
  const n = v.labels.length;
  const q = Math.min(query ?? n - 1, n - 1);
  for (const { head, w } of v.matrices) {
    const order = w[q].map((weight, j) => [weight, j]).filter(([, j]) => j <= q).sort((a, b) => b[0] - a[0]);
    const p = html("p", { class: "hint" }, container);
    p.textContent = `${state.head === "all" ? `head ${head}: ` : ""}“${v.labels[q]}” attends to ` +
      order.slice(0, 6).map(([weight, j]) => `“${v.labels[j]}”(${j}) ${fmt(weight)}`).join(", ") +
      (order.length > 6 ? ", …" : "") + ` — the row sums to ${fmt(w[q].reduce((a, b) => a + b, 0), 3)}`;
  }
}

// ----- heat maps -----------------------------------------------------------------------------
function drawHeatmaps(container, v, query, onPick) {
  container.replaceChildren();
  const n = v.labels.length;
  const cell = Math.max(9, Math.min(24, Math.floor((state.head === "all" ? 360 : 640) / n)));
  const pad = 14 + 8 * Math.max(...v.labels.map((l) => l.length));
  for (const { head, w } of v.matrices) {
    const fig = html("figure", { "data-head": head }, container);
    html("figcaption", {}, fig, `layer ${state.layer}, head ${head}`);
    const svg = el("svg", { class: "heatmap", width: pad + n * cell + 4, height: pad + n * cell + 4 }, fig);
    v.labels.forEach((label, i) => {
      el("text", { x: pad + i * cell + cell / 2, y: pad - 5, "text-anchor": "middle" }, svg, label);
      el("text", { x: pad - 5, y: pad + i * cell + cell / 2 + 4, "text-anchor": "end" }, svg, label);
    });
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const future = j > i;
        const rect = el("rect", {
          class: "hm", x: pad + j * cell, y: pad + i * cell, width: cell - 1, height: cell - 1,
          fill: future ? "var(--future)" : shade(w[i][j]), "data-row": i, "data-col": j, "data-weight": w[i][j],
        }, svg);
        el("title", {}, rect, future ? `${v.labels[i]} cannot see ${v.labels[j]} (future)`
          : `${v.labels[i]} → ${v.labels[j]}: ${fmt(w[i][j], 3)}`);
        if (onPick) rect.addEventListener("click", () => onPick(i, true));
      }
    }
    if (query !== null && query < n) {
      el("rect", { class: "q", x: pad, y: pad + query * cell, width: n * cell - 1, height: cell - 1 }, svg);
    }
  }
}

// ----- the text box and the prediction strip ---------------------------------------------------
function drawStrip() {
  const strip = $("strip");
  strip.replaceChildren();
  const a = state.analysis;
  if (!a) return;
  const q = currentCharQuery();
  a.labels.forEach((label, i) => {
    const pos = html("div", { class: "pos" + (i === q ? " selected" : ""), "data-index": i, title: `position ${i}` }, strip);
    html("div", { class: "ch" }, pos, label);
    const next = a.text[i + 1];
    for (const p of a.predictions[i]) {
      const row = html("div", { class: "pred" + (p.char === next ? " hit" : "") }, pos);
      html("span", {}, row, p.label);
      html("span", {}, row, fmt(p.p).replace(/^0/, ""));
      html("span", { class: "bar", style: `width:${Math.round(100 * p.p)}%` }, row);
    }
    pos.addEventListener("click", () => pick(state.words ? wordOf(i) : i, true));
  });
}

function currentCharQuery() {
  // The character the pinned query stands for (the last character of a word in word mode).
  const a = state.analysis;
  if (!a) return null;
  const q = state.query ?? a.text.length - 1;
  if (!state.words) return Math.min(q, a.text.length - 1);
  const group = a.words.positions[Math.min(q, a.words.positions.length - 1)];
  return group[group.length - 1];
}

function pick(i, pin) {
  if (!pin && i === state.hover) return;  // redrawing under a resting pointer would detach what it points at
  if (pin) { state.query = i; state.hover = null; }
  else state.hover = i;
  render();
  if (pin && state.tab === "pipeline") loadPipeline();
}

let typing = null;
function onType() {
  const text = $("text").value;
  $("count").textContent = `${[...text].length} / ${state.info.model.block_size}`;
  clearTimeout(typing);
  typing = setTimeout(() => analyze(text), 120);
}

async function analyze(text) {
  const ticket = ++state.requests;
  try {
    const a = await api("/api/analyze", { text });
    if (ticket !== state.requests) return; // a newer keystroke is on its way
    const grew = state.analysis && a.text.length > state.analysis.text.length;
    state.analysis = a;
    const n = state.words ? a.words.labels.length : a.text.length;
    if (state.query === null || state.query >= n || grew) state.query = n - 1;
    showError(null);
    render();
    if (state.tab === "pipeline") loadPipeline();
  } catch (e) {
    if (ticket === state.requests) showError(e.message);
  }
}

async function sample() {
  const out = $("continuation");
  out.textContent = "…";
  try {
    const r = await api("/api/sample", { text: $("text").value, n: Number($("sample-n").value),
                                         seed: Number($("seed").value), temperature: 0.8 });
    out.textContent = r.continuation;
    out.title = `seed ${r.seed}, temperature ${r.temperature}`;
  } catch (e) {
    out.textContent = "";
    showError(e.message);
  }
}

// ----- the pipeline: one head's computation for one query, step by step ------------------------
function numRow(tr, values, d = 2) { for (const v of values) html("td", {}, tr, fmt(v, d)); }

function vectorTable(parent, name, values) {
  const t = html("table", { class: "nums" }, parent);
  const head = html("tr", {}, t);
  html("th", {}, head, "");
  values.forEach((_, k) => html("th", {}, head, String(k)));
  const tr = html("tr", {}, t);
  html("th", {}, tr, name);
  numRow(tr, values);
  return t;
}

// The header row of a per-key table (scores, softmax): "j", then each key's index and character.
function keyHeader(table, labels) {
  const row = html("tr", {}, table);
  html("th", {}, row, "j");
  labels.forEach((label, j) => html("th", {}, row, `${j} ${label}`));
}

function stage(parent, title, math) {
  const s = html("div", { class: "stage" }, parent);
  html("h3", {}, s, title);
  if (math) html("div", { class: "math" }, s, math);
  return s;
}

async function loadPipeline() {
  const a = state.analysis;
  if (!a) return;
  const head = state.head === "all" ? 0 : state.head;
  const query = currentCharQuery();
  $("pipeline-caption").textContent = `Layer ${state.layer}, head ${head}` +
    (state.head === "all" ? " (pick one head above to follow another)" : "") +
    `, query position ${query} (“${a.labels[query]}”): click a character to follow another one.`;
  try {
    const t = await api("/api/trace", { text: a.text, layer: state.layer, head, query });
    drawPipeline(t);
  } catch (e) {
    showError(e.message);
  }
}

function drawPipeline(t) {
  const box = $("pipeline");
  box.replaceChildren();
  const i = t.query;
  const ch = (j) => `“${t.labels[j]}”`;
  let s = stage(box, `1. Input: x${sub(i)}, what layer ${t.layer} receives at ${ch(i)}`,
    `the character's embedding${t.layer ? ` after layers 0–${t.layer - 1}` : ""}, normalised; ${t.x.length} numbers`);
  vectorTable(s, `x${sub(i)}`, t.x);

  s = stage(box, "2. Query, keys and values", `q${sub(i)} = W_Q x${sub(i)}, k_j = W_K x_j, v_j = W_V x_j (d = ${t.d} numbers each)`);
  vectorTable(s, `q${sub(i)}`, t.q);
  const kv = html("table", { class: "nums", id: "kv" }, s);
  const hr = html("tr", {}, kv);
  html("th", {}, hr, "j");
  html("th", {}, hr, "");
  t.k[0].forEach((_, c) => html("th", {}, hr, `k${c}`));
  t.v[0].forEach((_, c) => html("th", {}, hr, `v${c}`));
  t.labels.forEach((label, j) => {
    const tr = html("tr", { class: j > i ? "future" : "" }, kv);
    html("th", {}, tr, String(j));
    html("th", {}, tr, label);
    numRow(tr, t.k[j]);
    numRow(tr, t.v[j]);
  });
  html("p", { class: "hint" }, s, `Rows after ${i} are greyed: ${ch(i)} cannot see the future.`);

  s = stage(box, "3. Scores", `s${sub(i)}ⱼ = q${sub(i)} · k_j / √${t.d} = q${sub(i)} · k_j / ${fmt(t.sqrt_d, 3)}`);
  const sc = html("table", { class: "nums", id: "scores" }, s);
  keyHeader(sc, t.labels);
  const sr = html("tr", {}, sc);
  html("th", {}, sr, "score");
  t.scores.forEach((v) => html("td", {}, sr, v === null ? "masked" : fmt(v)));

  s = stage(box, "4. Softmax", `a${sub(i)}ⱼ = exp(s${sub(i)}ⱼ) / Σ exp(s${sub(i)}ₖ): the row sums to 1, the future gets 0`);
  const wt = html("table", { class: "nums", id: "softmax" }, s);
  keyHeader(wt, t.labels);
  const wr = html("tr", {}, wt);
  html("th", {}, wr, "weight");
  t.weights.forEach((v, j) => html("td", { "data-to": j, style: `background:${j <= i ? shade(v) : "transparent"};color:${v > 0.45 ? "white" : "inherit"}` }, wr, fmt(v, 3)));
  html("p", { class: "check" }, s, `sum of the row: ${fmt(t.row_sum, 6)}`);

  s = stage(box, `5. Weighted sum: z${sub(i)} = Σⱼ a${sub(i)}ⱼ v_j`, "each value vector scaled by its weight, then added up");
  const zt = html("table", { class: "nums", id: "weighted" }, s);
  const zh = html("tr", {}, zt);
  html("th", {}, zh, "j");
  html("th", {}, zh, "a");
  t.z.forEach((_, c) => html("th", {}, zh, String(c)));
  t.weighted_v.forEach((row, j) => {
    const tr = html("tr", {}, zt);
    html("th", {}, tr, `${j} ${t.labels[j]}`);
    html("td", {}, tr, fmt(t.weights[j], 3));
    numRow(tr, row);
  });
  const total = html("tr", { class: "total" }, zt);
  html("th", {}, total, `z${sub(i)}`);
  html("td", {}, total, "");
  numRow(total, t.z);
  html("p", { class: "check" }, s,
    `the sum of the rows equals the head's output z${sub(i)} (largest difference ${t.sum_error.toExponential(1)}); ` +
    "it goes on, beside the other heads' outputs, into the output projection and the residual stream.");
}

// ".42", "1.0", "0": two decimals in three characters, to fit above a character.
function short(w) {
  const t = w.toFixed(2);
  return t === "1.00" ? "1.0" : t === "0.00" ? (w > 0 ? "<.01" : "0") : t.replace(/^0/, "");
}

function sub(i) { return String(i).replace(/\d/g, (d) => "₀₁₂₃₄₅₆₇₈₉"[Number(d)]); }

// ----- training: curves, the epoch table, the epoch slider --------------------------------------
function lineChart(svg, series, yLabel) {
  svg.replaceChildren();
  const W = 420, H = 220, L = 46, R = 90, T = 10, B = 28;
  const all = series.flatMap((s) => s.points);
  if (!all.length) return;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }, svg);
  for (const y of [y0, (y0 + y1) / 2, y1]) el("text", { x: L - 4, y: Y(y) + 4, "text-anchor": "end" }, svg, fmt(y, 2));
  el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, svg, "step");
  el("text", { x: L, y: H - B + 13, "text-anchor": "middle" }, svg, String(x0));
  el("text", { x: W - R, y: H - B + 13, "text-anchor": "middle" }, svg, String(x1));
  series.forEach((s, k) => {
    if (!s.points.length) return;
    el("polyline", { points: s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none",
                     stroke: s.colour, "stroke-width": s.thin ? 1 : 2, "stroke-opacity": s.thin ? 0.5 : 1 }, svg);
    if (!s.thin) for (const p of s.points) el("circle", { cx: X(p[0]), cy: Y(p[1]), r: 3, fill: s.colour }, svg);
    el("text", { x: W - R + 8, y: T + 14 + 16 * k, fill: s.colour, style: `fill:${s.colour}` }, svg, s.name);
  });
  svg.setAttribute("aria-label", yLabel);
}

async function loadTraining() {
  if (state.training) return;
  try {
    state.training = await api("/api/training");
  } catch (e) {
    showError(e.message);
    return;
  }
  const tr = state.training;
  const empty = !tr.epochs.length && !tr.attention_epochs.length;
  $("training-empty").hidden = !empty;
  $("training-body").hidden = empty;
  if (empty) return;
  const ep = tr.epochs;
  lineChart($("loss-chart"), [
    { name: "train", colour: "#08519c", points: ep.map((r) => [r.step, r.train_loss]) },
    { name: "val", colour: "#d94801", points: ep.map((r) => [r.step, r.val_loss]) },
    { name: "train, per step", colour: "#6baed6", thin: true, points: tr.steps.map((r) => [r.step, r.loss]) },
  ], "loss");
  lineChart($("accuracy-chart"), [
    { name: "train", colour: "#08519c", points: ep.map((r) => [r.step, r.train_accuracy]) },
    { name: "val", colour: "#d94801", points: ep.map((r) => [r.step, r.val_accuracy]) },
  ], "accuracy");
  const table = $("epoch-table");
  table.replaceChildren();
  const head = html("tr", {}, table);
  for (const name of ["Epoch", "Loss ↓", "Val loss ↓", "Accuracy ↑", "Observation", "Time"]) {
    html("th", { class: name === "Observation" ? "obs" : "" }, head, name);
  }
  for (const r of ep) {
    const row = html("tr", { "data-epoch": r.epoch }, table);
    html("td", {}, row, String(r.epoch));
    html("td", {}, row, fmt(r.train_loss, 4));
    html("td", {}, row, fmt(r.val_loss, 4));
    html("td", {}, row, fmt(r.val_accuracy, 3));
    html("td", { class: "obs" }, row, r.observation || "");
    html("td", {}, row, `${fmt(r.seconds, 1)}s`);
  }
  const slider = $("epoch");
  const epochs = tr.attention_epochs;
  if (epochs.length) {
    slider.min = epochs[0];
    slider.max = epochs[epochs.length - 1];
    slider.value = epochs[epochs.length - 1];
    slider.disabled = epochs.length < 2;
    await loadEpoch(Number(slider.value));
  } else {
    slider.disabled = true;
    $("epoch-label").textContent = "this run saved no attention per epoch (trained before attnlm did that)";
  }
}

async function loadEpoch(n) {
  const epochs = state.training.attention_epochs;
  const nearest = epochs.reduce((a, b) => Math.abs(b - n) < Math.abs(a - n) ? b : a, epochs[0]);
  try {
    state.epoch = await api(`/api/epoch?epoch=${nearest}`);
  } catch (e) {
    showError(e.message);
    return;
  }
  renderEpoch();
}

function renderEpoch() {
  const e = state.epoch;
  if (!e) return;
  const row = (state.training.epochs || []).find((r) => r.epoch === e.epoch);
  $("epoch-label").textContent = `after epoch ${e.epoch} (step ${e.step})` +
    (row ? `: val loss ${fmt(row.val_loss, 4)}` : "") + ` — probe text “${e.text.replace(/\n/g, "↵")}”`;
  for (const tr of $("epoch-table").querySelectorAll("tr[data-epoch]")) {
    tr.classList.toggle("current", Number(tr.dataset.epoch) === e.epoch);
  }
  const v = { labels: e.labels, matrices: heads().map((h) => ({ head: h, w: e.weights[state.layer][h] })) };
  const q = state.epochQuery ?? e.labels.length - 1;
  drawLines($("epoch-lines"), v, q, (i, pin) => {
    if (i === null || i === state.epochQuery) return;
    state.epochQuery = i;
    renderEpoch();
  });
  drawHeatmaps($("epoch-heatmaps"), v, q, null);
}

// ----- putting it together -----------------------------------------------------------------------
function render() {
  const a = state.analysis;
  if (!a) return;
  drawStrip();
  const v = view(a);
  const q = state.hover ?? state.query;
  const unit = state.words ? "word" : "character";
  $("lines-caption").textContent = `Layer ${state.layer}, ${state.head === "all" ? "all heads" : `head ${state.head}`}: ` +
    `lines run from the ${unit} asking (highlighted) to every earlier ${unit} it attends to; ` +
    "width and opacity follow the weight." + (state.words ? " A word's weight sums its characters; a word's row averages its characters' rows." : "");
  drawLines($("lines"), v, q, pick);
  weightTable($("lines-table"), v, q);
  drawHeatmaps($("heatmaps"), v, q, pick);
  if (state.epoch) renderEpoch();
}

function selectTab(tab) {
  state.tab = tab;
  for (const b of $("tabs").querySelectorAll("button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const name of ["lines", "heatmap", "pipeline", "training"]) $(`view-${name}`).hidden = name !== tab;
  if (tab === "pipeline") loadPipeline();
  if (tab === "training") loadTraining();
}

function fillSelect(select, values) {
  select.replaceChildren();
  for (const [value, label] of values) html("option", { value }, select, label);
}

async function main() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    showError(`cannot reach the attnlm server: ${e.message}`);
    return;
  }
  const info = state.info;
  const m = info.model;
  $("source").textContent = `${info.source} — ${m.n_layer} layers × ${m.n_head} heads × ${m.n_embd} wide, ` +
    `context ${m.block_size}, ${(m.params / 1e6).toFixed(2)}M parameters`;
  fillSelect($("layer"), [...Array(m.n_layer).keys()].map((l) => [l, String(l)]));
  fillSelect($("head"), [...[...Array(m.n_head).keys()].map((h) => [h, String(h)]), ["all", "all, side by side"]]);
  $("layer").onchange = () => { state.layer = Number($("layer").value); render(); if (state.tab === "pipeline") loadPipeline(); };
  $("head").onchange = () => {
    const h = $("head").value;
    state.head = h === "all" ? "all" : Number(h);
    render();
    if (state.tab === "pipeline") loadPipeline();
  };
  $("words").onchange = () => {
    const q = currentCharQuery();
    state.words = $("words").checked;
    state.query = state.words && q !== null ? wordOf(q) : q;
    render();
  };
  $("text").maxLength = m.block_size;
  $("text").addEventListener("input", onType);
  $("sample-button").onclick = sample;
  $("epoch").addEventListener("input", () => loadEpoch(Number($("epoch").value)));
  for (const b of $("tabs").querySelectorAll("button")) b.onclick = () => selectTab(b.dataset.tab);
  $("text").value = info.default_text;
  onType();
  await analyze(info.default_text);
}

main();
