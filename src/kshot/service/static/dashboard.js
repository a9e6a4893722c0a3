// kshot dashboard: the attempts list, a live loss curve (server-sent events), a comparison, and the
// `kshot tune` studies (objective per trial, best so far, parameter importance, trials).
// Plain DOM and inline SVG, no build step. Every value from the API goes in as text, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab"];
const REFRESH_MS = 3000;
const METRICS = ["accuracy", "macro_f1"];
const TRIAL_STATES = ["complete", "pruned", "fail", "running", "waiting"];

const state = {
  attempts: [], selected: null, attempt: null, compare: new Set(), source: null, steps: [], evaluations: [], ticket: 0,
  studies: [], studyName: null, study: null, studyTicket: 0, trial: null,
};

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
  if (!response.ok) {
    const err = new Error(`${url}: HTTP ${response.status}`);
    err.status = response.status;
    throw err;
  }
  return response.json();
}

function isNumber(value) {
  return typeof value === "number" && isFinite(value);
}

function fmt(value, digits = 3) {
  return isNumber(value) ? value.toFixed(digits) : "–";
}

// A param's value as a user would write it: 0.001, 1.5e-5, 8, adam.
function fmtParam(value) {
  if (isNumber(value)) {
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) < 1e-3 ? value.toExponential(2) : String(Number(value.toPrecision(3)));
  }
  if (value === null || value === undefined) return "–";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function accuracyOf(attempt) {
  const m = attempt.metrics || {};
  const value = m.accuracy ?? m.test_accuracy ?? (m.mean && m.mean.accuracy) ?? (m.test && m.test.accuracy);
  return typeof value === "number" ? (100 * value).toFixed(1) + "%" : "–";
}

// A class name made from an API value: only known words, so a value cannot add classes of its own.
function known(value, choices, fallback = "other") {
  return choices.includes(value) ? value : fallback;
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
    const statusCell = el("td"); statusCell.append(statusBadge(a.status));
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

function statusBadge(status) {
  const cls = known(status, ["queued", "running", "completed", "failed", "cancelled", "pruned"]);
  return el("span", { class: `status status-${cls}` }, status);
}

// ------------------------------------------------------------------------------ one attempt, live
// ``key``: the attempt's id or its name (a study's trials know their attempt by name).
async function select(key) {
  const ticket = ++state.ticket;
  if (state.source) state.source.close();
  state.source = null;
  let attempt;
  try {
    attempt = await getJSON(`/attempts/${encodeURIComponent(key)}`);
  } catch (err) {
    if (ticket === state.ticket) showMissing(key, err);
    return;
  }
  if (ticket !== state.ticket) return; // another attempt was clicked meanwhile
  if (state.source) state.source.close(); // one opened while this one was loading
  state.selected = attempt.id;
  state.attempt = attempt;
  state.steps = [];
  state.evaluations = [];
  document.querySelectorAll("#attempts tr.attempt").forEach((r) => r.classList.toggle("selected", r.dataset.id === String(attempt.id)));
  document.getElementById("detail-panel").hidden = false;
  showAttempt(attempt);
  drawDetail();
  renderEvaluations();
  // The stream replays every stored step first, then the new ones as the worker writes them.
  const source = new EventSource(`/attempts/${attempt.id}/events`);
  state.source = source;
  document.getElementById("live").hidden = false;
  source.addEventListener("step", (event) => {
    state.steps.push(JSON.parse(event.data));
    drawDetail();
  });
  source.addEventListener("evaluation", (event) => {
    state.evaluations.push(JSON.parse(event.data));
    renderEvaluations();
    drawDetail();
  });
  source.addEventListener("status", (event) => {
    state.attempt = JSON.parse(event.data);
    showAttempt(state.attempt);
  });
  source.addEventListener("end", () => {
    source.close();
    document.getElementById("live").hidden = true;
    refreshList();
  });
}

function showMissing(key, err) {
  state.selected = null;
  state.attempt = null;
  state.steps = [];
  state.evaluations = [];
  document.getElementById("detail-panel").hidden = false;
  document.getElementById("live").hidden = true;
  document.getElementById("detail-title").textContent = String(key);
  document.getElementById("detail-status").textContent = `cannot open this attempt (${err.message})`;
  document.getElementById("detail-error").hidden = true;
  drawDetail();
  renderEvaluations();
}

function showAttempt(a) {
  document.getElementById("detail-title").textContent = `${a.name} (${a.kind})`;
  const line = document.getElementById("detail-status");
  line.replaceChildren(statusBadge(a.status),
    document.createTextNode(` step ${a.n_steps}${a.total_steps ? " of " + a.total_steps : ""} · accuracy ${accuracyOf(a)}`));
  const error = document.getElementById("detail-error");
  error.hidden = !a.error;
  error.textContent = a.error || "";
}

// The metric that picks an attempt's best model (params.select_metric; Params' default is macro_f1).
function validationMetric(attempt) {
  const params = (attempt && attempt.command && attempt.command.params) || {};
  return known(params.select_metric, METRICS, "macro_f1");
}

// [step, mean over validation tasks of ``metric``] for every step that has a validation evaluation.
function validationCurve(evaluations, metric) {
  const byStep = new Map();
  for (const e of evaluations) {
    if (e.split !== "validation" || !isNumber(e[metric])) continue;
    // The stream may send a re-recorded (step, task) again: the latest row wins.
    if (!byStep.has(e.step)) byStep.set(e.step, new Map());
    byStep.get(e.step).set(e.task, e[metric]);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, tasks]) => {
    const values = [...tasks.values()];
    return [step, values.reduce((x, y) => x + y, 0) / values.length];
  });
}

// Smoothing of the raw per-step loss: an exponential moving average, s_t = w·s_(t-1) + (1-w)·x_t with
// w = 1 - 2/(span+1), debiased like TensorBoard's (divided by 1 - w^t, so the start is not pulled
// towards 0). It is causal, so the smoothed line of a live run never changes behind its tip. The span
// is 5% of the run's planned steps (5 to 200), fixed for the whole run however many steps have arrived.
function emaSpan(attempt, n) {
  const total = (attempt && attempt.total_steps) || n;
  return Math.min(200, Math.max(5, Math.round(total / 20)));
}

function ema(points, span) {
  const w = 1 - 2 / (span + 1);
  let s = 0, correction = 1;
  return points.map(([x, y]) => {
    s = w * s + (1 - w) * y;
    correction *= w;
    return [x, s / (1 - correction)];
  });
}

function drawDetail() {
  const series = [];
  const loss = state.steps.filter((s) => isNumber(s.metrics.loss)).map((s) => [s.step, s.metrics.loss]);
  const query = state.steps.filter((s) => isNumber(s.metrics.query_loss)).map((s) => [s.step, s.metrics.query_loss]);
  if (loss.length) {
    const span = emaSpan(state.attempt, loss.length);
    series.push({ name: "loss", label: "loss (per step)", color: COLORS[0], points: loss, className: "raw" });
    series.push({ name: "loss_smoothed", label: `loss, moving average (EMA span ${span})`, color: "#0d47a1",
      points: ema(loss, span), className: "smoothed" });
  }
  if (query.length) series.push({ name: "query_loss", color: COLORS[1], points: query });
  const metric = validationMetric(state.attempt);
  const validation = validationCurve(state.evaluations, metric);
  const secondary = validation.length ? [{
    name: `validation_${metric}`, label: `validation ${metric}, mean over tasks (right axis)`, color: COLORS[2],
    points: validation, markers: true, className: "secondary",
  }] : [];
  drawChart(document.getElementById("loss-chart"), series, { secondary });
  drawLegend(document.getElementById("loss-legend"), [...series, ...secondary]);
}

function drawLegend(container, series) {
  container.replaceChildren(...series.map((s) => {
    const item = el("span", {}, s.label || s.name);
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

// ---------------------------------------------------------------------------------------- studies
async function refreshStudies() {
  const panel = document.getElementById("studies-panel");
  let data;
  try {
    data = await getJSON("/studies");
  } catch (err) {
    // A service without studies (404): no panel. Anything else: say so where the list would be.
    panel.hidden = err.status === 404 || !state.studies.length;
    document.getElementById("studies-note").textContent = err.status === 404 ? "" : `cannot list studies (${err.message})`;
    return;
  }
  state.studies = data.studies || [];
  document.getElementById("studies-note").textContent = "";
  panel.hidden = state.studies.length === 0 && !state.studyName;
  renderStudies(state.studies);
  // An open study with trials still going is redrawn as they report.
  if (state.studyName && state.study && state.study.name === state.studyName) {
    const listed = state.studies.find((s) => s.name === state.studyName);
    const going = state.study.trials.some((t) => t.state === "running" || t.state === "waiting");
    if (going || (listed && listed.n_trials !== state.study.trials.length)) openStudy(state.studyName, { quiet: true });
  }
}

function renderStudies(studies) {
  const body = document.querySelector("#studies tbody");
  body.replaceChildren();
  for (const s of studies) {
    const row = el("tr", { class: "study", "data-name": s.name });
    if (s.name === state.studyName) row.classList.add("selected");
    const trials = el("td", { class: "trials" }, `${s.n_trials} `);
    trials.append(...countBadges(s.counts || {}));
    const best = isNumber(s.best_value) ? `${fmt(s.best_value)} (trial ${s.best_trial})` : "–";
    row.append(el("td", { class: "name" }, s.name), el("td", {}, s.metric), trials, el("td", { class: "best" }, best));
    row.addEventListener("click", () => openStudy(s.name));
    body.append(row);
  }
}

function countBadges(counts) {
  const order = [...TRIAL_STATES, ...Object.keys(counts).filter((k) => !TRIAL_STATES.includes(k)).sort()];
  return order.filter((k) => counts[k]).map((k) => el("span", {
    class: `state state-${known(k, TRIAL_STATES)}`, "data-state": k,
  }, `${counts[k]} ${k}`));
}

async function openStudy(name, { quiet = false } = {}) {
  const ticket = ++state.studyTicket;
  if (!quiet) state.trial = null;
  state.studyName = name;
  document.querySelectorAll("#studies tr.study").forEach((r) => r.classList.toggle("selected", r.dataset.name === name));
  const panel = document.getElementById("study-panel");
  let study;
  try {
    study = await getJSON(`/studies/${encodeURIComponent(name)}`);
  } catch (err) {
    if (ticket !== state.studyTicket || quiet) return;
    state.study = null;
    panel.hidden = false;
    document.getElementById("study-title").textContent = `Study ${name}`;
    document.getElementById("study-summary").textContent = `cannot open this study (${err.message})`;
    for (const id of ["study-space", "study-note"]) document.getElementById(id).textContent = "";
    drawStudyChart({ trials: [] });
    drawBars(document.getElementById("importance-chart"), {});
    renderTrials({ trials: [], space: {} });
    return;
  }
  if (ticket !== state.studyTicket) return;
  state.study = study;
  panel.hidden = false;
  renderStudy(study);
}

function closeStudy() {
  state.studyTicket++;
  state.studyName = null;
  state.study = null;
  state.trial = null;
  document.getElementById("study-panel").hidden = true;
  document.querySelectorAll("#studies tr.study").forEach((r) => r.classList.remove("selected"));
}

function renderStudy(study) {
  document.getElementById("study-title").textContent = `Study ${study.name}`;
  const counts = {};
  for (const t of study.trials) counts[t.state] = (counts[t.state] || 0) + 1;
  const summary = document.getElementById("study-summary");
  const line = `maximise validation ${study.metric} · pruner ${study.pruner} · ${study.trials.length} trial(s) `;
  summary.replaceChildren(document.createTextNode(line), ...countBadges(counts));
  if (study.best) {
    const params = Object.entries(study.best.params || {}).map(([k, v]) => `${k}=${fmtParam(v)}`).join(", ");
    const best = ` · best ${fmt(study.best.value)} at trial ${study.best.number}${params ? ` (${params})` : ""}`;
    summary.append(document.createTextNode(best));
  }
  document.getElementById("study-space").textContent = "space: " + (Object.entries(study.space || {}).map(([k, d]) => {
    if (d && d.type === "categorical") return `${k} ∈ {${(d.choices || []).map(fmtParam).join(", ")}}`;
    const extra = [d && d.log ? "log" : "", d && d.step !== undefined && d.step !== null ? `step ${fmtParam(d.step)}` : ""].filter(Boolean);
    return `${k}: ${d && d.type} ${fmtParam(d && d.low)} to ${fmtParam(d && d.high)}${extra.length ? ` (${extra.join(", ")})` : ""}`;
  }).join(" · ") || "–");
  drawStudyChart(study);
  drawBars(document.getElementById("importance-chart"), study.importance || {});
  renderTrials(study);
}

function lastIntermediate(trial) {
  const values = (trial.intermediate || []).filter((p) => Array.isArray(p) && isNumber(p[1]));
  return values.length ? values[values.length - 1] : null;
}

function trialTitle(t) {
  const params = Object.entries(t.params || {}).map(([k, v]) => `${k}=${fmtParam(v)}`).join(", ");
  return `trial ${t.number} (${t.state}): ${fmt(t.value ?? (lastIntermediate(t) || [])[1])}${params ? " · " + params : ""}`;
}

function drawStudyChart(study) {
  const trials = [...study.trials].sort((a, b) => a.number - b.number);
  const complete = trials.filter((t) => t.state === "complete" && isNumber(t.value));
  // A pruned trial is drawn hollow at its value (Optuna records its last reported value), else at
  // its last intermediate value; failed, running and waiting trials have no objective and are not drawn.
  const pruned = trials.filter((t) => t.state === "pruned")
    .map((t) => [t.number, isNumber(t.value) ? t.value : (lastIntermediate(t) || [])[1], t])
    .filter((p) => isNumber(p[1]));
  let best = -Infinity;
  const bestSoFar = complete.map((t) => [t.number, (best = Math.max(best, t.value))]);
  const trialPoints = (points, name, label, color, hollow) => ({
    name, label, color, hollow, style: "points", points, className: "trial",
    pointAttrs: (p) => ({ "data-trial": String(p[2].number), "data-state": known(p[2].state, TRIAL_STATES),
      "data-value": String(p[1]) }),
    selected: (p) => p[2].number === state.trial,
    title: (p) => trialTitle(p[2]),
    onClick: (p) => openTrial(p[2]),
  });
  const series = [
    { name: "best", label: "best so far", color: COLORS[3], style: "step", points: bestSoFar, className: "best",
      attrs: { "data-values": bestSoFar.map((p) => String(p[1])).join(",") } },
    trialPoints(complete.map((t) => [t.number, t.value, t]), "complete", "complete trial", COLORS[0], false),
    trialPoints(pruned, "pruned", "pruned trial (value when pruned)", "#9e9e9e", true),
  ].filter((s) => s.points.length);
  drawChart(document.getElementById("study-chart"), series, { xLabel: "trial", xPad: 0.5, yPad: 0.08, empty: "no finished trials yet" });
  drawLegend(document.getElementById("study-legend"), series);
  const missing = {};
  for (const t of trials) {
    const drawn = (t.state === "complete" && isNumber(t.value)) || pruned.some((p) => p[2] === t);
    if (!drawn) missing[t.state] = (missing[t.state] || 0) + 1;
  }
  const note = Object.entries(missing).map(([k, n]) => `${n} ${k}`).join(", ");
  document.getElementById("study-note").textContent = note ? `Not drawn (no objective value): ${note}.` : "";
}

function renderTrials(study) {
  const trials = [...study.trials].sort((a, b) => a.number - b.number);
  const params = Object.keys(study.space || {});
  for (const t of trials) for (const k of Object.keys(t.params || {})) if (!params.includes(k)) params.push(k);
  const head = el("tr");
  head.append(...["#", "state", "value", ...params, "last reported", "attempt", ""].map((h) => el("th", {}, h)));
  document.querySelector("#trials thead").replaceChildren(head);
  const body = document.querySelector("#trials tbody");
  body.replaceChildren(...trials.map((t) => {
    const row = el("tr", { class: "trial", "data-number": String(t.number), "data-state": known(t.state, TRIAL_STATES) });
    if (t.number === state.trial) row.classList.add("selected");
    const stateCell = el("td");
    stateCell.append(el("span", { class: `state state-${known(t.state, TRIAL_STATES)}` }, t.state));
    const last = lastIntermediate(t);
    row.append(el("td", {}, String(t.number)), stateCell, el("td", { class: "value" }, fmt(t.value)),
      ...params.map((k) => el("td", { class: "param" }, k in (t.params || {}) ? fmtParam(t.params[k]) : "–")),
      el("td", {}, last ? `${fmt(last[1])} at step ${last[0]}` : "–"),
      el("td", { class: "attempt-name" }, t.attempt || "–"),
      el("td", { class: "muted" }, t.warm_start ? "warm start" : ""));
    if (t.attempt) row.title = `show the loss curve of ${t.attempt}`;
    row.addEventListener("click", () => openTrial(t));
    return row;
  }));
}

// A trial, clicked on the chart or in the table: its attempt's loss curve in the attempt view.
function openTrial(trial) {
  state.trial = trial.number;
  const number = String(trial.number);
  document.querySelectorAll("#trials tr.trial").forEach((r) => r.classList.toggle("selected", r.dataset.number === number));
  document.querySelectorAll("#study-chart circle.trial").forEach((c) => c.classList.toggle("selected", c.dataset.trial === number));
  if (!trial.attempt) {
    document.getElementById("study-note").textContent = `Trial ${trial.number} has no attempt (it never started training).`;
    return;
  }
  select(trial.attempt);
  document.getElementById("detail-panel").scrollIntoView({ block: "nearest" });
}

// -------------------------------------------------------------------------------------- SVG chart
// The x range (``pad`` on each side, so points at the ends are not cut) and the y range of a chart.
function xSpan(values, pad) {
  const lo = Math.min(...values), hi = Math.max(...values);
  return [lo - pad, (hi === lo && !pad ? lo + 1 : hi) + pad];
}

// ``pad``: a fraction of the range added above and below (so points at the ends are not cut).
function ySpan(values, pad = 0) {
  const lo = Math.min(...values), hi = Math.max(...values);
  const d = lo === hi ? Math.abs(lo) * 0.1 || 0.5 : (hi - lo) * pad;
  return [lo - d, hi + d];
}

// Five evenly spaced values, or (``integer``) whole numbers at a round interval: 1, 2, 5, 10, 20, ...
function ticks(lo, hi, integer) {
  if (!integer) return [0, 1, 2, 3, 4].map((i) => lo + (i / 4) * (hi - lo));
  let step = 1;
  for (let k = 0; (hi - lo) / step > 6; k++) step = [2, 5, 10][k % 3] * 10 ** Math.floor(k / 3);
  const out = [];
  for (let x = Math.ceil(lo / step) * step; x <= hi; x += step) out.push(x);
  return out;
}

// ``series`` on the left axis, ``opts.secondary`` on a right axis of its own; the x axis is shared.
// A series is a line (default), a step line ("step") or points ("points"); ``markers`` adds points to a line.
function drawChart(svg, series, opts = {}) {
  const secondary = opts.secondary || [];
  const W = 640, H = 300, left = 50, right = secondary.length ? 50 : 15, top = 15, bottom = 35;
  svg.replaceChildren();
  const primary = series.flatMap((s) => s.points), other = secondary.flatMap((s) => s.points);
  if (!primary.length && !other.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, opts.empty || "no steps yet"));
    return;
  }
  const [x0, x1] = xSpan([...primary, ...other].map((p) => p[0]), opts.xPad || 0);
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (W - left - right);
  const yScale = (points) => {
    const [y0, y1] = ySpan(points.map((p) => p[1]), opts.yPad || 0);
    return { y0, y1, s: (y) => top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom) };
  };
  const ly = primary.length ? yScale(primary) : null, ry = other.length ? yScale(other) : null;
  const grid = ly || ry;
  for (const y of ticks(grid.y0, grid.y1, false)) {
    svg.append(svgEl("line", { x1: left, x2: W - right, y1: grid.s(y), y2: grid.s(y), class: "grid" }));
  }
  if (ly) {
    for (const y of ticks(ly.y0, ly.y1, false)) {
      svg.append(svgEl("text", { x: left - 6, y: ly.s(y) + 4, "text-anchor": "end" }, y.toPrecision(3)));
    }
  }
  if (ry) {
    for (const y of ticks(ry.y0, ry.y1, false)) {
      svg.append(svgEl("text", { x: W - right + 6, y: ry.s(y) + 4, "text-anchor": "start", fill: secondary[0].color, class: "right" },
        y.toPrecision(3)));
    }
    svg.append(svgEl("line", { x1: W - right, x2: W - right, y1: top, y2: H - bottom, class: "axis" }));
  }
  for (const x of ticks(x0, x1, opts.integerX !== false)) {
    svg.append(svgEl("text", { x: sx(x), y: H - bottom + 16, "text-anchor": "middle" }, String(Math.round(x))));
  }
  svg.append(svgEl("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }));
  svg.append(svgEl("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }));
  svg.append(svgEl("text", { x: (W + left - right + 15) / 2, y: H - 4, "text-anchor": "middle" }, opts.xLabel || "step"));
  if (ly) for (const s of series) plot(svg, s, sx, ly.s);
  if (ry) for (const s of secondary) plot(svg, s, sx, ry.s);
}

function plot(svg, s, sx, sy) {
  if (!s.points.length) return;
  const cls = s.className ? ` ${s.className}` : "";
  if (s.style !== "points") {
    const xy = s.points.map((p) => [sx(p[0]).toFixed(1), sy(p[1]).toFixed(1)]);
    const d = s.style === "step"
      ? xy.map(([x, y], i) => (i ? `H${x} V${y}` : `M${x},${y}`)).join(" ")
      : xy.map(([x, y], i) => `${i ? "L" : "M"}${x},${y}`).join(" ");
    svg.append(svgEl("path", { d, stroke: s.color, class: `series${cls}`, "data-series": s.name,
      "data-points": String(s.points.length), ...(s.attrs || {}) }));
  }
  if (s.style === "points" || s.markers) {
    for (const p of s.points) {
      const dot = svgEl("circle", {
        cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: s.style === "points" ? 5 : 3, stroke: s.color,
        fill: s.hollow ? "#fff" : s.color, class: `point${cls}`, "data-series": s.name, ...(s.pointAttrs ? s.pointAttrs(p) : {}),
      });
      if (s.selected && s.selected(p)) dot.classList.add("selected");
      if (s.title) dot.append(svgEl("title", {}, s.title(p)));
      if (s.onClick) dot.addEventListener("click", () => s.onClick(p));
      svg.append(dot);
    }
  }
}

// Horizontal bars, largest first: the study's parameter importance (Optuna's, summing to 1).
function drawBars(svg, values) {
  const entries = Object.entries(values).filter(([, v]) => isNumber(v)).sort((a, b) => b[1] - a[1]);
  const W = 640, row = 26, top = 8, left = 170, right = 60;
  const H = top * 2 + row * Math.max(entries.length, 2);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  if (!entries.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
      "no importance yet (it needs a few complete trials)"));
    return;
  }
  const most = Math.max(...entries.map(([, v]) => v), 1e-12);
  entries.forEach(([name, v], i) => {
    const y = top + i * row;
    const short = name.length > 26 ? name.slice(0, 25) + "…" : name;
    const label = svgEl("text", { x: left - 8, y: y + row / 2 + 4, "text-anchor": "end" }, short);
    label.append(svgEl("title", {}, name));
    const width = Math.max(1, (Math.max(v, 0) / most) * (W - left - right));
    const bar = svgEl("rect", { x: left, y: y + 4, width: width.toFixed(1), height: row - 8, fill: COLORS[4], class: "bar",
      "data-param": name, "data-value": String(v) });
    bar.append(svgEl("title", {}, `${name}: ${fmt(v)}`));
    svg.append(label, bar, svgEl("text", { x: left + width + 6, y: y + row / 2 + 4 }, fmt(v)));
  });
}

// ------------------------------------------------------------------------------------------ start
document.getElementById("status-filter").addEventListener("change", refreshList);
document.getElementById("name-filter").addEventListener("input", refreshList);
document.getElementById("compare-button").addEventListener("click", compare);
document.getElementById("study-close").addEventListener("click", closeStudy);
refreshList();
refreshStudies();
setInterval(() => { refreshList(); refreshStudies(); }, REFRESH_MS);
// A link like /#attempt=12 (or /#attempt=name) opens that attempt directly; /#study=name opens a study.
function openLinked() {
  const attempt = /attempt=([^&]+)/.exec(location.hash);
  if (attempt) select(decodeURIComponent(attempt[1]));
  const study = /study=([^&]+)/.exec(location.hash);
  if (study) openStudy(decodeURIComponent(study[1]));
}
window.addEventListener("hashchange", openLinked);
openLinked();
