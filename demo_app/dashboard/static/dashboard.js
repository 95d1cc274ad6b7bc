// chaosproxy demo dashboard: polls /status twice a second and shows it. The charts are
// Chart.js (vendored in static/vendor/, with its licence): it sizes the canvas to the
// device pixel ratio and picks round axis ticks.
"use strict";

const POLL_MS = 500;
// a breaker is half-open only for its trial call (milliseconds): the label holds that
// state this long so a room can see it
const HOLD_MS = 2000;
const OUTCOMES = [
  ["ok", "ok", "--ok"],
  ["ok_retry", "ok after retry", "--retry"],
  ["fallback", "fallback (cache)", "--fallback"],
  ["error", "error", "--error"],
];
const STATE_COLOR = { open: "--open", "half-open": "--half", closed: "--ok" };
const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

let lastStatus = null;
let scenariosLoaded = false;
let pending = false;
let charts = null;
// transitions already seen (by time), and the half-open state the label holds
let seenUpTo = null;
let heldUntil = 0;

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  return { ok: response.ok, status: response.status, data };
}

function fmtTime(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
}

// ------------------------------------------------------------------ breaker

function noteTransitions(list) {
  // on the first status, the history is old news: hold nothing from it
  const newest = list.length ? list[list.length - 1].time : 0;
  if (seenUpTo === null) { seenUpTo = newest; return; }
  for (const t of list) {
    if (t.time > seenUpTo && t.to === "half-open") heldUntil = Date.now() + HOLD_MS;
  }
  if (!list.length || newest < seenUpTo) seenUpTo = newest;  // after a reset
  else seenUpTo = Math.max(seenUpTo, newest);
}

function renderBreaker(b) {
  noteTransitions(b.transitions);
  const holding = Date.now() < heldUntil && b.state !== "half-open";
  const shown = holding ? "half-open" : b.state;
  const el = $("breaker-state");
  el.textContent = shown;
  el.className = "breaker " + shown;
  el.dataset.state = shown;
  el.dataset.actual = b.state;
  const held = $("breaker-held");
  held.hidden = !holding;
  held.textContent = holding ? `trial call made, now ${b.state}` : "";
  $("fail-counter").textContent = b.fail_counter;
  $("fail-max").textContent = b.fail_max;
  $("reset-timeout").textContent = b.reset_timeout;
  $("breaker-disabled").hidden = b.enabled;
  const log = $("transitions");
  const numbered = b.transitions.map((t, i) => [i + 1, t]).reverse();
  const key = b.transitions.map((t) => t.time).join(",");
  if (log.dataset.key !== key) {
    log.dataset.key = key;
    log.replaceChildren(...numbered.map(([n, t]) => {
      const li = document.createElement("li");
      const num = document.createElement("span");
      num.className = "n";
      num.textContent = n;
      const time = document.createElement("time");
      time.textContent = fmtTime(t.time);
      const change = document.createElement("span");
      change.className = "change";
      const to = document.createElement("span");
      to.className = "to-" + t.to;
      to.textContent = t.to;
      change.append(`${t.from || "–"} → `, to);
      li.append(num, time, change);
      return li;
    }));
  }
}

// ------------------------------------------------------------------ proxy and controls

function renderProxy(p) {
  $("proxy-scenario").textContent = p.scenario || (p.reachable ? "(none)" : "–");
  $("proxy-phase").textContent = p.phase || "–";
  $("proxy-description").textContent = p.description || "";
  $("proxy-description").title = p.description || "";
  $("proxy-error").hidden = p.reachable;
  $("proxy-error").textContent = p.reachable ? "" : (p.error || "control API unreachable");
  renderPhases(p);
  const picker = $("scenario-picker");
  if (p.scenario && document.activeElement !== picker && !picker.dataset.touched) {
    picker.value = p.scenario;
  }
}

function renderPhases(p) {
  const box = $("phase-buttons");
  const phases = p.phases || [];
  const key = phases.join(",") + "|" + p.phase;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...phases.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "phase" + (name === p.phase ? " active" : "");
    button.textContent = name;
    button.title = "jump to this phase";
    button.addEventListener("click", async () => {
      await api("POST", "/proxy/phase", { phase: name });
      poll();
    });
    return button;
  }));
}

function renderControls(s) {
  const t = s.traffic;
  const button = $("traffic-toggle");
  button.textContent = t.running ? "Stop traffic" : "Start traffic";
  button.classList.toggle("running", t.running);
  button.dataset.running = t.running;
  if (document.activeElement !== $("traffic-rate")) $("traffic-rate").value = t.rate;
  $("traffic-info").textContent = t.running
    ? `running: ${t.rate} req/s, ${t.in_flight} in flight, ${t.sent} sent` +
      (t.skipped ? `, ${t.skipped} skipped (all workers busy)` : "")
    : `stopped (${t.sent} sent)`;
  for (const name of ["retries", "breaker", "timeouts"]) {
    const box = $("set-" + name);
    if (!box.dataset.busy) box.checked = s.settings[name];
  }
  const st = s.settings;
  $("settings-info").textContent =
    `${st.retries ? st.max_attempts : 1} attempts within ${st.max_retry_time} s · ` +
    (st.timeouts ? `timeouts ${st.connect_timeout} s connect / ${st.read_timeout} s read`
                 : "no timeouts: a hanging upstream hangs the app");
}

// ------------------------------------------------------------------ charts

// Vertical markers at the breaker's transitions (half-open labelled), drawn over both
// charts at the same place in time. Each chart keeps what it drew in chart.$markers.
const transitionMarkers = {
  id: "transitionMarkers",
  afterDatasetsDraw(chart) {
    const markers = [];
    chart.$markers = markers;
    const series = chart.$series;
    if (!lastStatus || !series || !series.length) return;
    const { left, right, top, bottom } = chart.chartArea;
    const start = series[0].t;
    const span = series.length;
    const ctx = chart.ctx;
    // half-open last, so it is drawn on top of the transition that ends it
    const list = lastStatus.breaker.transitions.slice().sort(
      (a, b) => (a.to === "half-open") - (b.to === "half-open"));
    ctx.save();
    const drawn = [];
    for (const t of list) {
      const offset = t.time - start;
      if (offset < 0 || offset > span + 1) continue;
      const x = Math.min(right - 1, left + (offset / span) * (right - left));
      const half = t.to === "half-open";
      ctx.strokeStyle = css(STATE_COLOR[t.to] || "--dim");
      ctx.lineWidth = half ? 3 : 2;
      ctx.setLineDash(half ? [] : [6, 4]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
      drawn.push([t, x]);
      markers.push({ to: t.to, x: Math.round(x), time: t.time });
    }
    // then a flag on each half-open line, and a label where it does not overlap the last
    ctx.font = `bold ${Chart.defaults.font.size}px ${Chart.defaults.font.family}`;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    const pad = 3;
    const flags = drawn.filter(([t]) => t.to === "half-open").map(([, x]) => x);
    flags.sort((a, b) => a - b);
    ctx.fillStyle = css("--half");
    for (const x of flags) {
      ctx.beginPath();
      ctx.moveTo(x - 7, top);
      ctx.lineTo(x + 7, top);
      ctx.lineTo(x, top + 10);
      ctx.fill();
    }
    let labelledUpTo = -Infinity;
    for (const x of flags) {
      const label = "half-open";
      const width = ctx.measureText(label).width + 2 * pad;
      const from = x + 8 + width > right ? x - 8 - width : x + 8;
      if (from < labelledUpTo + 4) continue;
      ctx.fillStyle = css("--card");
      ctx.fillRect(from, top + 12, width, Chart.defaults.font.size + 2 * pad);
      ctx.fillStyle = css("--half");
      ctx.fillText(label, from + pad, top + 12 + pad);
      labelledUpTo = from + width;
    }
    ctx.restore();
  },
};

function secondsAgoLabel(series) {
  return (value, index) => {
    const ago = series.length - index;
    if (ago === 1) return "now";
    return ago % 10 === 0 ? `−${ago} s` : null;
  };
}

function makeCharts() {
  Chart.defaults.color = css("--dim");
  Chart.defaults.borderColor = css("--line");
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = Math.round(parseFloat(getComputedStyle(document.body).fontSize) * 0.87);
  const common = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: { position: "top", align: "end", labels: { boxWidth: 12, boxHeight: 12, padding: 10 } },
      tooltip: { enabled: true },
    },
  };
  const xAxis = {
    offset: true,
    grid: { display: false },
    ticks: { autoSkip: false, maxRotation: 0 },
  };
  const outcomes = new Chart($("outcomes"), {
    type: "bar",
    data: {
      labels: [],
      datasets: OUTCOMES.map(([key, label, color]) => ({
        key, label, data: [], backgroundColor: css(color), borderWidth: 0,
        barPercentage: 0.9, categoryPercentage: 1,
      })),
    },
    options: {
      ...common,
      scales: {
        x: { ...xAxis, stacked: true },
        y: {
          stacked: true, beginAtZero: true, suggestedMax: 5,
          ticks: { precision: 0, maxTicksLimit: 6 },
          title: { display: true, text: "requests / s" },
        },
      },
    },
    plugins: [transitionMarkers],
  });
  const latency = new Chart($("latency"), {
    type: "line",
    data: {
      labels: [],
      datasets: [
        ["p95_ms", "p95", "--error"],
        ["p50_ms", "p50", "--ok"],
      ].map(([key, label, color]) => ({
        key, label, data: [], borderColor: css(color), backgroundColor: css(color),
        borderWidth: 2, pointRadius: 0, spanGaps: false, tension: 0,
      })),
    },
    options: {
      ...common,
      scales: {
        x: { ...xAxis },
        y: {
          beginAtZero: true, suggestedMax: 50,
          ticks: { maxTicksLimit: 6, callback: (v) => `${v} ms` },
        },
      },
    },
    plugins: [transitionMarkers],
  });
  return { outcomes, latency };
}

function renderCharts(series) {
  if (!charts) charts = makeCharts();
  const labels = series.map((p) => p.t);
  for (const chart of [charts.outcomes, charts.latency]) {
    chart.$series = series;
    chart.data.labels = labels;
    chart.options.scales.x.ticks.callback = secondsAgoLabel(series);
    for (const ds of chart.data.datasets) ds.data = series.map((p) => p[ds.key] ?? null);
    chart.update("none");
  }
}

// ------------------------------------------------------------------ assessment

let assessTimer = null;

function renderAssessment(a) {
  const run = $("assess-run");
  const running = a.state === "running";
  run.disabled = running || !a.enabled;
  run.textContent = running ? "Assessing…" : "Run quick assessment";
  let words = "no assessment yet";
  if (!a.enabled) words = "assessing needs the real upstream: start the demo with chaosproxy demo";
  else if (running) words = `running for ${Math.round(Date.now() / 1000 - a.started)} s…`;
  else if (a.state === "done") words = `done in ${(a.finished - a.started).toFixed(1)} s, ` +
    `at ${fmtTime(a.finished)}`;
  else if (a.state === "failed") words = `failed (exit code ${a.exit_code})`;
  $("assess-state").textContent = words;
  $("assess-state").dataset.state = a.state;
  $("assess-report").hidden = !a.report;
  // a new URL per run, so the browser never shows the previous report
  if (a.report) $("assess-report").href = `/assessment/report.html?run=${a.run}`;
  const card = $("assess-card");
  if (card.textContent !== a.output) {
    const atEnd = card.scrollTop + card.clientHeight >= card.scrollHeight - 4;
    card.textContent = a.output;
    if (running && atEnd) card.scrollTop = card.scrollHeight;
  }
  if (a.state === "done" && card.dataset.shown !== String(a.run)) {
    // finished: show the report card from its first line, past the progress lines
    card.dataset.shown = String(a.run);
    const lines = a.output.split("\n");
    const first = lines.findIndex((line) => line.startsWith("chaosproxy assess  "));
    if (first >= 0) card.scrollTop = (card.scrollHeight / lines.length) * first;
  }
}

async function pollAssessment() {
  const r = await api("GET", "/assessment");
  if (r.ok) renderAssessment(r.data);
  const keepGoing = r.ok && (r.data.state === "running" || $("assessment").open);
  clearTimeout(assessTimer);
  assessTimer = keepGoing ? setTimeout(pollAssessment, 1000) : null;
}

function setupAssessment() {
  $("assess-open").addEventListener("click", () => {
    $("assessment").showModal();
    pollAssessment();
  });
  $("assess-close").addEventListener("click", () => $("assessment").close());
  $("assess-run").addEventListener("click", async () => {
    $("assess-run").disabled = true;
    const r = await api("POST", "/assessment", {});
    if (r.data && "state" in r.data) renderAssessment(r.data);  // refusals carry it too
    if (r.ok) pollAssessment();
    else $("assess-state").textContent = (r.data && r.data.error) || `error ${r.status}`;
  });
}

// ------------------------------------------------------------------ polling

function render(s) {
  lastStatus = s;
  renderBreaker(s.breaker);
  renderProxy(s.proxy);
  renderControls(s);
  renderCharts(s.series);
  $("p50").textContent = s.latency.p50_ms ?? "–";
  $("p95").textContent = s.latency.p95_ms ?? "–";
  $("totals").textContent = "totals: " +
    OUTCOMES.map(([k, label]) => `${label} ${s.totals[k]}`).join(" · ") +
    ` · cached cities ${s.cache.cities}`;
  if (!scenariosLoaded && s.proxy.reachable) loadScenarios();
}

function connection(live) {
  $("connection").textContent = live ? "live" : "app unreachable";
  $("connection").className = live ? "pill live" : "pill down";
}

async function poll() {
  if (pending) return;
  pending = true;
  try {
    let r = null;
    try { r = await api("GET", "/status"); } catch (e) { /* the app is down: said below */ }
    connection(r !== null && r.ok);
    if (r !== null && r.ok) render(r.data);  // a bug here reaches the console, not the pill
  } finally {
    pending = false;
  }
}

async function loadScenarios() {
  scenariosLoaded = true;
  const r = await api("GET", "/proxy/scenarios");
  const list = Array.isArray(r.data) ? r.data : (r.data && r.data.scenarios) || [];
  if (!r.ok || !list.length) { scenariosLoaded = false; return; }
  const picker = $("scenario-picker");
  picker.replaceChildren(...list.map((sc) => {
    const opt = document.createElement("option");
    opt.value = sc.name;
    opt.textContent = sc.name;
    opt.title = sc.description || "";
    return opt;
  }));
  if (lastStatus && lastStatus.proxy.scenario) picker.value = lastStatus.proxy.scenario;
}

function setup() {
  $("scenario-picker").addEventListener("change", () => {
    $("scenario-picker").dataset.touched = "1";
  });
  $("scenario-apply").addEventListener("click", async () => {
    const picker = $("scenario-picker");
    const name = picker.value;
    const r = await api("PUT", "/proxy/scenario", { name });
    delete picker.dataset.touched;
    $("scenario-message").textContent = r.ok
      ? `switched to ${name}`
      : `could not switch: ${(r.data && (r.data.error || (r.data.problems || []).join("; "))) || r.status}`;
    poll();
  });
  $("traffic-toggle").addEventListener("click", async () => {
    const running = $("traffic-toggle").dataset.running === "true";
    const rate = Number($("traffic-rate").value) || 5;
    await api("POST", "/traffic", { running: !running, rate });
    poll();
  });
  $("traffic-rate").addEventListener("change", async () => {
    const rate = Number($("traffic-rate").value);
    if (rate > 0) await api("POST", "/traffic", { rate });
  });
  for (const name of ["retries", "breaker", "timeouts"]) {
    const box = $("set-" + name);
    box.addEventListener("change", async () => {
      box.dataset.busy = "1";
      await api("POST", "/settings", { [name]: box.checked });
      delete box.dataset.busy;
      poll();
    });
  }
  $("reset").addEventListener("click", async () => {
    await api("POST", "/reset", {});
    heldUntil = 0;
    poll();
  });
  setupAssessment();
  poll();
  setInterval(poll, POLL_MS);
}

// for the browser test and a curious presenter's console
window.dashboard = { charts: () => charts, HOLD_MS };

document.addEventListener("DOMContentLoaded", setup);
