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
  requests: 0,       // tickets: an answer to an older request than the newest of its kind is dropped
  samples: 0,
  traces: 0,
  nexts: 0,
  errors: {},        // the failed request of each kind ("analyze", "sample", ...) and its message
  minWeight: 0.1,    // the graph's threshold
};

// ----- talking to the server -----------------------------------------------------------------
async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("cannot reach the attnlm server (is `attnlm explore` still running?)");
  }
  let data;
  try { data = await response.json(); } catch (e) { data = { error: `the server answered ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// One error line for the whole page: the message of the first failed kind of request, until that kind
// succeeds again. Whatever the failed request would have redrawn is cleared by its caller, so nothing on the
// page belongs to a text or a setting other than the current one.
function setError(kind, message) {
  if (message) state.errors[kind] = message;
  else delete state.errors[kind];
  const shown = Object.values(state.errors)[0] || "";
  const box = $("error");
  box.textContent = shown;
  box.hidden = !shown;
}

function clearSample() {
  state.samples++;  // an answer still on its way is for the text or settings before the change
  const out = $("continuation");
  out.textContent = "";
  out.title = "";
}

function clearNext() {
  state.nexts++;
  $("next-chart").replaceChildren();
  $("next-caption").textContent = "";
}

function clearAnalysis() {
  // The text could not be read: every view drawn from the previous text goes, predictions and all.
  state.analysis = null;
  state.hover = null;
  state.traces++;
  for (const id of ["strip", "lines", "lines-table", "heatmaps", "heatmap-legend", "graph", "pipeline"]) {
    $(id).replaceChildren();
  }
  for (const id of ["lines-caption", "heatmap-caption", "graph-caption", "pipeline-caption", "pipeline-words"]) {
    $(id).textContent = "";
  }
  $("pipeline-words").hidden = true;
  clearSample();
  clearNext();
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

// ----- one figure per head, side by side ------------------------------------------------------------
// "All, side by side" lays the heads out in a grid that wraps (style.css: .heads); each head's figure scrolls
// on its own when its text is wider than its column. Returns [{head, w, svg}] to draw into.
const MIN_COLUMN = 340;  // px: the narrowest column a head gets before the grid wraps to fewer columns

function headFigures(container, v, extraClass = "") {
  container.replaceChildren();
  container.classList.toggle("all", v.matrices.length > 1);
  return v.matrices.map(({ head, w }) => {
    const fig = html("figure", { class: "head-figure", "data-head": head }, container);
    html("figcaption", {}, fig, `layer ${state.layer}, head ${head}`);
    const box = html("div", { class: "scroll" }, fig);
    const svg = el("svg", { class: extraClass }, box);
    return { head, w, svg };
  });
}

// The width one head's drawing may take: the whole container, or one column of the grid.
function columnWidth(container, count) {
  // Measured on the tab bar, which is always shown: a hidden view's own width reads 0.
  const width = Math.max(300, $("tabs").clientWidth - 30);
  if (count <= 1) return width;
  const columns = Math.max(1, Math.min(count, Math.floor(width / MIN_COLUMN)));
  return (width - 16 * (columns - 1)) / columns;
}

// ----- the attention lines (attention read as a directed graph) ----------------------------------
function drawLines(container, v, query, onPick) {
  const figures = headFigures(container, v, "lines");
  const n = v.labels.length;
  const wide = Math.max(...v.labels.map((l) => l.length));
  const fit = Math.floor((columnWidth(container, figures.length) - 24) / n);
  // One head: a roomy cell; several: as small as fits the column, down to a cell that still reads.
  const cell = figures.length > 1 ? Math.max(16, Math.min(26, fit), 8 * wide + 8) : Math.max(26, 10 * wide + 12);
  const rowHeight = 50 + Math.min(200, 12 * n + 40);
  const q = Math.min(query ?? n - 1, n - 1);
  for (const { head, w, svg } of figures) {
    svg.classList.toggle("compact", cell < 24);
    svg.setAttribute("width", 20 + n * cell);
    svg.setAttribute("height", rowHeight);
    const g = el("g", { class: "head", "data-head": head, transform: "translate(10, 0)" }, svg);
    const base = rowHeight - 24;
    const x = (i) => i * cell + cell / 2;
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
    if (onPick) svg.onmouseleave = () => onPick(null, false);
  }
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
  const figures = headFigures(container, v, "heatmap");
  const n = v.labels.length;
  const wide = Math.max(...v.labels.map((l) => l.length));
  const pad = 14 + 8 * wide;
  const fit = Math.floor((columnWidth(container, figures.length) - pad - 8) / n);
  const cell = Math.max(8, Math.min(24, fit));
  const font = Math.min(11, cell + 2);
  for (const { w, svg } of figures) {
    svg.setAttribute("width", pad + n * cell + 4);
    svg.setAttribute("height", pad + n * cell + 4);
    v.labels.forEach((label, i) => {
      el("text", { x: pad + i * cell + cell / 2, y: pad - 5, "text-anchor": "middle", "font-size": font }, svg, label);
      el("text", { x: pad - 5, y: pad + i * cell + cell / 2 + 4, "text-anchor": "end", "font-size": font }, svg, label);
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

// The heat maps' colour scale: 0 to 1 in the shades the cells use, and the grey of the future.
let legends = 0;
function drawLegend(container) {
  container.replaceChildren();
  const id = `legend-gradient-${++legends}`;
  const W = 200, L = 8;
  const svg = el("svg", { class: "legend", width: W + 2 * L + 150, height: 48, role: "img",
                          "aria-label": "colour scale: attention probability from 0 to 1" }, container);
  const gradient = el("linearGradient", { id, x1: 0, x2: 1, y1: 0, y2: 0 }, el("defs", {}, svg));
  for (let k = 0; k <= 10; k++) el("stop", { offset: k / 10, "stop-color": shade(k / 10) }, gradient);
  el("rect", { x: L, y: 4, width: W, height: 12, fill: `url(#${id})`, stroke: "#999" }, svg);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    el("line", { x1: L + t * W, x2: L + t * W, y1: 16, y2: 20, stroke: "#999" }, svg);
    el("text", { class: "tick", x: L + t * W, y: 31, "text-anchor": "middle" }, svg, String(t));
  }
  el("text", { class: "name", x: L + W / 2, y: 45, "text-anchor": "middle" }, svg, "attention probability");
  el("rect", { x: L + W + 20, y: 4, width: 12, height: 12, fill: "var(--future)", stroke: "#999" }, svg);
  el("text", { class: "tick", x: L + W + 38, y: 14 }, svg, "future: never seen");
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
  clearSample();  // a continuation of the text before this keystroke
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
    setError("analyze", null);
    render();
    loadNext();
    if (epochFollowsText(a.text)) loadEpoch(Number($("epoch").value));
    if (state.tab === "pipeline") loadPipeline();
  } catch (e) {
    if (ticket !== state.requests) return;
    clearAnalysis();
    setError("analyze", e.message);
  }
}

// ----- sampling: the settings, the continuation, the distribution it draws from --------------------
function sampling() {
  const k = Number($("top-k").value), p = Number($("top-p").value);
  return { temperature: Number($("temperature").value), top_k: k, top_p: p };
}

function showSampling() {
  const s = sampling();
  $("temperature-value").textContent = s.temperature.toFixed(2);
  $("top-k-value").textContent = s.top_k === 0 ? "off" : String(s.top_k);
  $("top-p-value").textContent = s.top_p === 1 ? "off" : s.top_p.toFixed(2);
}

let settling = null;
function onSampling() {
  showSampling();
  clearSample();  // drawn under the settings before this change
  clearTimeout(settling);
  settling = setTimeout(loadNext, 80);
}

async function sample() {
  const ticket = ++state.samples;
  const out = $("continuation");
  out.textContent = "…";
  try {
    const r = await api("/api/sample", { text: $("text").value, n: Number($("sample-n").value),
                                         seed: Number($("seed").value), ...sampling() });
    if (ticket !== state.samples) return;  // the text or the settings changed meanwhile
    out.textContent = r.continuation;
    out.title = `seed ${r.seed}, temperature ${r.temperature}, top-k ${r.top_k ?? "off"}, top-p ${r.top_p ?? "off"}`;
    setError("sample", null);
  } catch (e) {
    if (ticket !== state.samples) return;
    clearSample();
    setError("sample", e.message);
  }
}

async function loadNext() {
  const a = state.analysis;
  if (!a) return;
  const ticket = ++state.nexts;
  try {
    const r = await api("/api/next", { text: a.text, ...sampling() });
    if (ticket !== state.nexts) return;
    drawNext(r);
    setError("next", null);
  } catch (e) {
    if (ticket !== state.nexts) return;
    clearNext();
    setError("next", e.message);
  }
}

function drawNext(r) {
  const settings = [`temperature ${fmt(r.temperature)}`, r.top_k ? `top-k ${r.top_k}` : "no top-k",
                    r.top_p ? `top-p ${fmt(r.top_p)}` : "no top-p"].join(", ");
  $("next-caption").textContent = `The next character is drawn from this (${settings}): ${r.kept} of the ` +
    `${r.vocab_size} characters kept, their probabilities renormalised to sum to 1; the ${r.next.length} likeliest shown.`;
  // A column per character, likeliest first, as tall as its probability against the likeliest's (each
  // bar is labelled with its own).
  const svg = $("next-chart");
  svg.replaceChildren();
  const colW = 42, H = 70, T = 14, B = 18;
  svg.setAttribute("width", 8 + r.next.length * colW);
  svg.setAttribute("height", T + H + B);
  el("line", { x1: 0, x2: 8 + r.next.length * colW, y1: T + H, y2: T + H, stroke: "#999" }, svg);
  r.next.forEach((c, k) => {
    const g = el("g", { class: "next", "data-char": c.char, "data-p": c.p, transform: `translate(${4 + k * colW}, 0)` }, svg);
    const h = Math.max(1, H * c.p / r.next[0].p);
    el("rect", { class: "bar", x: 6, y: T + H - h, width: colW - 12, height: h }, g);
    el("text", { class: "p", x: colW / 2, y: T + H - h - 3, "text-anchor": "middle" }, g, fmt(c.p, 3).replace(/^0/, ""));
    el("text", { class: "char", x: colW / 2, y: T + H + 14, "text-anchor": "middle" }, g, c.label);
    el("title", {}, g, `“${c.label}”: ${fmt(c.p, 4)}`);
  });
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
  const ticket = ++state.traces;
  const head = state.head === "all" ? 0 : state.head;
  const query = currentCharQuery();
  $("pipeline-caption").textContent = `Layer ${state.layer}, head ${head}` +
    (state.head === "all" ? " (pick one head above to follow another)" : "") +
    `, query position ${query} (“${a.labels[query]}”): click a character to follow another one.`;
  // The model attends between characters; words are a way of reading its weights, so the pipeline stays per
  // character and says which one stands for the word.
  const word = state.words ? a.words.labels[wordOf(query)] : null;
  $("pipeline-words").hidden = !state.words;
  $("pipeline-words").textContent = state.words ? `Words are on, but the pipeline is per character: the model ` +
    `computes attention between characters, and grouping into words only sums its weights afterwards. The word ` +
    `“${word}” is followed here through its last character, “${a.labels[query]}” (position ${query}).` : "";
  try {
    const t = await api("/api/trace", { text: a.text, layer: state.layer, head, query });
    if (ticket !== state.traces) return;
    drawPipeline(t);
    setError("trace", null);
  } catch (e) {
    if (ticket !== state.traces) return;
    $("pipeline").replaceChildren();
    setError("trace", e.message);
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

// ----- the graph: attention as a directed graph, drawn here (no Graphviz) ---------------------------
// As `attnlm attention --graph` draws it: a node per character (or word) in reading order, an arrow from each
// query to every key it gives more than the minimum weight, as wide and as opaque as the weight, labelled with
// it. Attention only looks back, so every arrow runs right to left (or loops back onto its own node).
let graphs = 0;
function drawGraph(container, v, minWeight) {
  const figures = headFigures(container, v, "graph");
  const n = v.labels.length;
  const radius = v.labels.map((l) => Math.max(14, 4 * l.length + 8));
  const gap = 18;
  const xs = [];
  let x = 16;
  for (let i = 0; i < n; i++) { x += radius[i]; xs.push(x); x += radius[i] + gap; }
  const maxLift = Math.min(220, 30 + 14 * n);
  const base = maxLift + 40;
  let shown = 0;
  for (const { head, w, svg } of figures) {
    svg.setAttribute("width", x);
    svg.setAttribute("height", base + Math.max(...radius) + 8);
    const marker = `arrow-${++graphs}`;
    el("path", { d: "M 0 0 L 8 4 L 0 8 z", fill: "#08306b" },
       el("marker", { id: marker, viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 8, markerHeight: 8,
                      markerUnits: "userSpaceOnUse", orient: "auto" }, el("defs", {}, svg)));
    const edges = el("g", { class: "edges" }, svg);
    let count = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const weight = w[i][j];
        if (!(weight > minWeight)) continue;
        count++;
        const top = base - radius[i];
        let d, lx, ly;
        if (i === j) {  // a loop over the node's top
          const r = radius[i];
          d = `M ${xs[i] + 0.5 * r} ${base - 0.85 * r} C ${xs[i] + r} ${top - 34} ${xs[i] - r} ${top - 34} ${xs[i] - 0.5 * r} ${base - 0.87 * r}`;
          lx = xs[i]; ly = top - 28;
        } else {  // an arc over the nodes between, higher the farther it reaches
          const lift = 24 + (maxLift - 24) * (i - j) / Math.max(1, n - 1);
          const y0 = base - radius[i], y1 = base - radius[j];
          d = `M ${xs[i]} ${y0} Q ${(xs[i] + xs[j]) / 2} ${Math.min(y0, y1) - 2 * lift} ${xs[j]} ${y1}`;
          lx = (xs[i] + xs[j]) / 2; ly = Math.min(y0, y1) - lift + 3;
        }
        const path = el("path", {
          class: "edge", d, "stroke-width": (0.5 + 5 * weight).toFixed(2),
          "stroke-opacity": ((64 + 191 * weight) / 255).toFixed(3), "marker-end": `url(#${marker})`,
          "data-from": i, "data-to": j, "data-head": head, "data-weight": weight,
        }, edges);
        el("title", {}, path, `${v.labels[i]} → ${v.labels[j]}: ${fmt(weight, 3)}`);
        el("text", { class: "weight", x: lx, y: ly, "data-from": i, "data-to": j }, edges, fmt(weight));
      }
    }
    shown = Math.max(shown, count);
    v.labels.forEach((label, i) => {
      const g = el("g", { class: "node", "data-index": i }, svg);
      el("circle", { cx: xs[i], cy: base, r: radius[i] }, g);
      el("text", { x: xs[i], y: base + 5, "text-anchor": "middle" }, g, label);
    });
    svg.setAttribute("data-edges", count);
  }
  return shown;
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
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);  // shrinks with a narrow window instead of being cut
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
    setError("training", null);
  } catch (e) {
    $("training-empty").hidden = true;
    $("training-body").hidden = true;  // nothing of another run, or half drawn, stays
    setError("training", e.message);
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
  drawHeadScores($("head-scores"), tr);
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

// The slider replays the text being analysed under the weights the run kept after that epoch; the server
// falls back to the probe text saved then (a run that kept no weights) and says why. Without an analysed
// text (the box holds one the model cannot read) it asks for the probe text.
let epochTicket = 0;
async function loadEpoch(n) {
  const epochs = state.training.attention_epochs;
  const nearest = epochs.reduce((a, b) => Math.abs(b - n) < Math.abs(a - n) ? b : a, epochs[0]);
  const ticket = ++epochTicket;
  const body = state.analysis ? { epoch: nearest, text: state.analysis.text } : { epoch: nearest };
  try {
    const e = await api("/api/epoch", body);
    if (ticket !== epochTicket) return;
    if (!state.epoch || state.epoch.text !== e.text) state.epochQuery = null;  // another text: its last character
    state.epoch = e;
    setError("epoch", null);
  } catch (e) {
    if (ticket !== epochTicket) return;
    state.epoch = null;  // the slider no longer points at what is drawn: draw nothing
    for (const id of ["epoch-lines", "epoch-heatmaps", "epoch-legend"]) $(id).replaceChildren();
    $("epoch-label").textContent = "";
    epochNote(null);
    setError("epoch", e.message);
    return;
  }
  renderEpoch();
}

// Whether a newly analysed text changes what the slider shows: the replay of another text, or the probe text
// shown for want of an analysed one. A probe text shown for want of weights stays as it is.
function epochFollowsText(text) {
  if (!state.training || !state.training.attention_epochs.length) return false;  // the tab is not drawn
  const e = state.epoch;
  return !e || (e.replayed === "typed" ? e.text !== text : !e.reason);
}

// The note under the slider when it replays the probe text for want of weights; made on first use.
function epochNote(text) {
  let note = $("epoch-note");
  if (!note) {
    note = html("p", { id: "epoch-note", class: "note" });
    $("epoch-lines").before(note);
  }
  note.textContent = text || "";
  note.hidden = !text;
}

// The head scores after each epoch (metrics.jsonl), one grid per score: a row per head "layer.head", a column
// per epoch (0: before training), each cell shaded by its score (0 to 1) and labelled with it.
function drawHeadScores(container, tr) {
  container.replaceChildren();
  const history = tr.heads || [];
  $("head-scores-empty").hidden = history.length > 0;
  if (!history.length) return;
  const keys = Object.keys(history[history.length - 1].heads);
  const cellW = 40, cellH = 22, L = 40, T = 20;
  for (const score of tr.scores) {
    const fig = html("figure", { "data-score": score }, container);
    html("figcaption", {}, fig, `${score.replace("_", "-")} score`);
    const box = html("div", { class: "scroll" }, fig);
    const svg = el("svg", { class: "scores", width: L + history.length * cellW + 4, height: T + keys.length * cellH + 4 }, box);
    history.forEach((h, c) => el("text", { class: "epoch", x: L + c * cellW + cellW / 2, y: T - 6, "text-anchor": "middle" },
                                   svg, String(h.epoch)));
    keys.forEach((key, r) => {
      el("text", { class: "key", x: L - 6, y: T + r * cellH + cellH / 2 + 4, "text-anchor": "end" }, svg, key);
      history.forEach((h, c) => {
        const value = h.heads[key] ? h.heads[key][score] : null;
        const g = el("g", { class: "score", "data-head": key, "data-epoch": h.epoch, "data-value": value ?? "" }, svg);
        el("rect", { x: L + c * cellW, y: T + r * cellH, width: cellW - 2, height: cellH - 2,
                     fill: value === null ? "var(--future)" : shade(value) }, g);
        el("text", { x: L + c * cellW + cellW / 2 - 1, y: T + r * cellH + cellH / 2 + 3, "text-anchor": "middle",
                     fill: value !== null && value > 0.45 ? "white" : "#1b1f24" }, g, value === null ? "-" : fmt(value));
        el("title", {}, g, `head ${key} after epoch ${h.epoch}: ${score.replace("_", "-")} score ${fmt(value, 3)}`);
      });
    });
  }
}

function renderEpoch() {
  const e = state.epoch;
  if (!e) return;
  const row = (state.training.epochs || []).find((r) => r.epoch === e.epoch);
  $("epoch-label").textContent = `after epoch ${e.epoch} (step ${e.step})` +
    (row ? `: val loss ${fmt(row.val_loss, 4)}` : "") +
    ` — ${e.replayed === "typed" ? "your" : "probe"} text “${e.text.replace(/\n/g, "↵")}”`;
  epochNote(e.reason ? `${e.reason}: showing the probe text it saved` : null);
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
  drawLegend($("epoch-legend"));
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
  $("heatmap-caption").textContent = `Rows: the ${unit} asking (query); columns: the ${unit} it attends to (key). ` +
    `Each row sums to 1; grey cells are the future, which a ${unit} can never see. Click a row to pick that query.`;
  drawHeatmaps($("heatmaps"), v, q, pick);
  drawLegend($("heatmap-legend"));
  if (state.tab === "graph") renderGraph();
  if (state.epoch) renderEpoch();
}

function renderGraph() {
  const a = state.analysis;
  if (!a) return;
  const v = view(a);
  const unit = state.words ? "word" : "character";
  $("min-weight-value").textContent = state.minWeight.toFixed(2);
  const shown = drawGraph($("graph"), v, state.minWeight);
  $("graph-caption").textContent = `Layer ${state.layer}, ${state.head === "all" ? "all heads" : `head ${state.head}`}: ` +
    `a node per ${unit}, an arrow from each ${unit} to every earlier ${unit} (or itself) it gives more than ` +
    `${state.minWeight.toFixed(2)} of its attention, as wide and as dark as the weight` +
    (v.matrices.length === 1 ? ` (${shown} arrows).` : ".");
}

function selectTab(tab) {
  state.tab = tab;
  for (const b of $("tabs").querySelectorAll("button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const name of ["lines", "heatmap", "graph", "pipeline", "training"]) $(`view-${name}`).hidden = name !== tab;
  if (tab === "graph") renderGraph();
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
    setError("info", e.message);
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
    if (state.tab === "pipeline") loadPipeline();
  };
  $("min-weight").addEventListener("input", () => { state.minWeight = Number($("min-weight").value); renderGraph(); });
  $("top-k").max = info.vocab.length;
  for (const id of ["temperature", "top-k", "top-p"]) $(id).addEventListener("input", onSampling);
  showSampling();
  let resizing = null;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(render, 150); });
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
