// kshot dashboard: the attempts list, a live loss curve (server-sent events) and a comparison.
// Plain DOM and inline SVG, no build step. Every value from the API goes in as text, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab"];
const REFRESH_MS = 3000;

const state = { attempts: [], selected: null, compare: new Set(), source: null, steps: [], evaluations: [] };

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function fmt(value, digits = 3) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

function accuracyOf(attempt) {
  const m = attempt.metrics || {};
  const value = m.accuracy ?? m.test_accuracy ?? (m.mean && m.mean.accuracy) ?? (m.test && m.test.accuracy);
  return typeof value === "number" ? (100 * value).toFixed(1) + "%" : "–";
}

// ------------------------------------------------------------------------------------ attempts list
async function refreshList() {
  const params = new URLSearchParams({ limit: "200", sort: "-created_at" });
  const status = document.getElementById("status-filter").value;
  const q = document.getElementById("name-filter").value.trim();
  if (status) params.set("status", status);
  if (q) params.set("q", q);
  try {
    const page = await getJSON(`/attempts?${params}`);
    state.attempts = page.items;
    renderList(page);
  } catch (err) {
    document.getElementById("summary").textContent = `cannot reach the service (${err.message})`;
  }
}

function renderList(page) {
  const body = document.querySelector("#attempts tbody");
  body.replaceChildren();
  for (const a of page.items) {
    const row = el("tr", { class: "attempt", "data-id": String(a.id), "data-status": a.status });
    if (state.selected === a.id) row.classList.add("selected");
    const box = el("input", { type: "checkbox", "aria-label": `compare ${a.name}` });
    box.checked = state.compare.has(a.id);
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      if (box.checked) state.compare.add(a.id); else state.compare.delete(a.id);
      document.getElementById("compare-button").disabled = state.compare.size < 2;
    });
    const check = el("td"); check.append(box);
    const statusCell = el("td"); statusCell.append(el("span", { class: `status status-${a.status}` }, a.status));
    const steps = a.total_steps ? `${a.n_steps}/${a.total_steps}` : String(a.n_steps);
    row.append(check, el("td", { class: "name" }, a.name), el("td", {}, a.kind), statusCell,
      el("td", {}, steps), el("td", {}, accuracyOf(a)), el("td", {}, (a.created_at || "").replace("T", " ").slice(0, 19)));
    row.addEventListener("click", () => select(a.id));
    body.append(row);
  }
  document.getElementById("empty").hidden = page.items.length > 0;
  const running = page.items.filter((a) => a.status === "running").length;
  document.getElementById("summary").textContent = `${page.total} attempt(s), ${running} running`;
  document.getElementById("compare-button").disabled = state.compare.size < 2;
}

// ------------------------------------------------------------------------------ one attempt, live
async function select(id) {
  state.selected = id;
  document.querySelectorAll("#attempts tr.attempt").forEach((r) => r.classList.toggle("selected", r.dataset.id === String(id)));
  if (state.source) state.source.close();
  state.steps = [];
  state.evaluations = [];
  const attempt = await getJSON(`/attempts/${id}`);
  document.getElementById("detail-panel").hidden = false;
  showAttempt(attempt);
  drawDetail();
  renderEvaluations();
  // The stream replays every stored step first, then the new ones as the worker writes them.
  const source = new EventSource(`/attempts/${id}/events`);
  state.source = source;
  document.getElementById("live").hidden = false;
  source.addEventListener("step", (event) => {
    state.steps.push(JSON.parse(event.data));
    drawDetail();
  });
  source.addEventListener("evaluation", (event) => {
    state.evaluations.push(JSON.parse(event.data));
    renderEvaluations();
  });
  source.addEventListener("status", (event) => showAttempt(JSON.parse(event.data)));
  source.addEventListener("end", () => {
    source.close();
    document.getElementById("live").hidden = true;
    refreshList();
  });
}

function showAttempt(a) {
  document.getElementById("detail-title").textContent = `${a.name} (${a.kind})`;
  const line = document.getElementById("detail-status");
  line.replaceChildren(el("span", { class: `status status-${a.status}` }, a.status),
    document.createTextNode(` step ${a.n_steps}${a.total_steps ? " of " + a.total_steps : ""} · accuracy ${accuracyOf(a)}`));
  const error = document.getElementById("detail-error");
  error.hidden = !a.error;
  error.textContent = a.error || "";
}

function drawDetail() {
  const series = [];
  const loss = state.steps.filter((s) => typeof s.metrics.loss === "number").map((s) => [s.step, s.metrics.loss]);
  const query = state.steps.filter((s) => typeof s.metrics.query_loss === "number").map((s) => [s.step, s.metrics.query_loss]);
  if (loss.length) series.push({ name: "loss", color: COLORS[0], points: loss });
  if (query.length) series.push({ name: "query_loss", color: COLORS[1], points: query });
  drawChart(document.getElementById("loss-chart"), series);
  drawLegend(document.getElementById("loss-legend"), series);
}

function drawLegend(container, series) {
  container.replaceChildren(...series.map((s) => {
    const item = el("span", {}, s.name);
    item.prepend(el("i", { style: `background:${s.color}` }));
    return item;
  }));
}

function renderEvaluations() {
  const body = document.querySelector("#evaluations tbody");
  body.replaceChildren();
  for (const e of state.evaluations) {
    body.append(rowOf([e.step, e.split, e.task, fmt(e.accuracy), fmt(e.macro_f1)]));
  }
}

function rowOf(cells) {
  const row = el("tr");
  for (const c of cells) row.append(el("td", {}, String(c)));
  return row;
}

// ------------------------------------------------------------------------------------- comparison
async function compare() {
  const ids = [...state.compare];
  const data = await Promise.all(ids.map(async (id) => ({
    attempt: await getJSON(`/attempts/${id}`),
    steps: await getJSON(`/attempts/${id}/steps`),
    evaluations: await getJSON(`/attempts/${id}/evaluations`),
  })));
  document.getElementById("compare-panel").hidden = false;
  const series = data.map((d, i) => ({
    name: d.attempt.name, color: COLORS[i % COLORS.length],
    points: d.steps.filter((s) => typeof s.metrics.loss === "number").map((s) => [s.step, s.metrics.loss]),
  }));
  drawChart(document.getElementById("compare-chart"), series);
  drawLegend(document.getElementById("compare-legend"), series);
  renderComparisonTable(data);
}

function bestSplit(evaluations) {
  const test = evaluations.filter((e) => e.split === "test");
  if (test.length) return test;
  const last = Math.max(...evaluations.map((e) => e.step));
  return evaluations.filter((e) => e.step === last);
}

function renderComparisonTable(data) {
  const perAttempt = data.map((d) => new Map(bestSplit(d.evaluations).map((e) => [e.task, e.accuracy])));
  const tasks = [...new Set(perAttempt.flatMap((m) => [...m.keys()]))].sort();
  const head = el("tr");
  head.append(el("th", {}, "task"), ...data.map((d) => el("th", {}, d.attempt.name)));
  document.querySelector("#compare-table thead").replaceChildren(head);
  const body = document.querySelector("#compare-table tbody");
  body.replaceChildren(...tasks.map((t) => rowOf([t, ...perAttempt.map((m) => (m.has(t) ? fmt(100 * m.get(t), 1) : "–"))])));
}

// -------------------------------------------------------------------------------------- SVG chart
function drawChart(svg, series) {
  const W = 640, H = 300, left = 50, right = 15, top = 15, bottom = 35;
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no steps yet"));
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) x1 = x0 + 1;
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (W - left - right);
  const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (i / 4) * (y1 - y0);
    svg.append(svgEl("line", { x1: left, x2: W - right, y1: sy(y), y2: sy(y), class: "grid" }));
    svg.append(svgEl("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end" }, y.toPrecision(3)));
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (i / 4) * (x1 - x0);
    svg.append(svgEl("text", { x: sx(x), y: H - bottom + 16, "text-anchor": "middle" }, String(Math.round(x))));
  }
  svg.append(svgEl("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }));
  svg.append(svgEl("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }));
  svg.append(svgEl("text", { x: (W + left) / 2, y: H - 4, "text-anchor": "middle" }, "step"));
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.append(svgEl("path", { d, stroke: s.color, class: "series", "data-series": s.name, "data-points": String(s.points.length) }));
  }
}

// ------------------------------------------------------------------------------------------ start
document.getElementById("status-filter").addEventListener("change", refreshList);
document.getElementById("name-filter").addEventListener("input", refreshList);
document.getElementById("compare-button").addEventListener("click", compare);
refreshList();
setInterval(refreshList, REFRESH_MS);
// A link like /#attempt=12 opens that attempt directly.
const linked = /attempt=(\d+)/.exec(location.hash);
if (linked) select(Number(linked[1]));
