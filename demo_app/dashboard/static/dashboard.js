// chaosproxy demo dashboard: polls /status twice a second and draws it. No libraries.
"use strict";

const POLL_MS = 500;
const OUTCOMES = [
  ["ok", "ok", "--ok"],
  ["ok_retry", "ok after retry", "--retry"],
  ["fallback", "fallback (cache)", "--fallback"],
  ["error", "error", "--error"],
];
const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

let lastStatus = null;
let scenariosLoaded = false;
let pending = false;

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

function renderBreaker(b) {
  const el = $("breaker-state");
  el.textContent = b.state;
  el.className = "breaker " + b.state;
  el.dataset.state = b.state;
  $("fail-counter").textContent = b.fail_counter;
  $("fail-max").textContent = b.fail_max;
  $("reset-timeout").textContent = b.reset_timeout;
  $("breaker-disabled").hidden = b.enabled;
  const log = $("transitions");
  const items = b.transitions.slice().reverse().slice(0, 30);
  const key = items.map((t) => t.time).join(",");
  if (log.dataset.key !== key) {
    log.dataset.key = key;
    log.replaceChildren(...items.map((t) => {
      const li = document.createElement("li");
      li.textContent = `${fmtTime(t.time)}  ${t.from || "–"} → ${t.to}`;
      return li;
    }));
  }
}

function renderProxy(p) {
  $("proxy-scenario").textContent = p.scenario || (p.reachable ? "(none)" : "–");
  $("proxy-phase").textContent = p.phase || "–";
  $("proxy-description").textContent = p.description || "";
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

function drawOutcomes(series) {
  const canvas = $("outcomes");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  const totals = series.map((p) => OUTCOMES.reduce((n, [k]) => n + (p[k] || 0), 0));
  const max = Math.max(5, ...totals);
  axes(ctx, w, h, pad, max, "");
  const bw = (w - pad - 4) / series.length;
  series.forEach((p, i) => {
    let y = h - pad;
    for (const [key, , color] of OUTCOMES) {
      const v = p[key] || 0;
      if (!v) continue;
      const bh = (v / max) * (h - 2 * pad);
      ctx.fillStyle = css(color);
      ctx.fillRect(pad + 2 + i * bw, y - bh, Math.max(1, bw - 2), bh);
      y -= bh;
    }
  });
}

function drawLatency(series) {
  const canvas = $("latency");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  const values = series.flatMap((p) => [p.p50_ms, p.p95_ms]).filter((v) => v != null);
  const max = Math.max(50, ...values) * 1.1;
  axes(ctx, w, h, pad, max, " ms");
  const step = (w - pad - 4) / series.length;
  for (const [key, color] of [["p95_ms", "--error"], ["p50_ms", "--ok"]]) {
    ctx.strokeStyle = css(color);
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    series.forEach((p, i) => {
      const v = p[key];
      if (v == null) { drawing = false; return; }
      const x = pad + 2 + i * step + step / 2, y = h - pad - (v / max) * (h - 2 * pad);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }
}

function axes(ctx, w, h, pad, max, unit) {
  ctx.strokeStyle = css("--line");
  ctx.fillStyle = css("--dim");
  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const frac of [0, 0.5, 1]) {
    const y = h - pad - frac * (h - 2 * pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(Math.round(frac * max) + unit, 2, y - 3);
  }
  ctx.fillText("60 s ago", pad, h - 8);
  ctx.fillText("now", w - 30, h - 8);
}

function render(s) {
  lastStatus = s;
  renderBreaker(s.breaker);
  renderProxy(s.proxy);
  renderControls(s);
  drawOutcomes(s.series);
  drawLatency(s.series);
  $("p50").textContent = s.latency.p50_ms ?? "–";
  $("p95").textContent = s.latency.p95_ms ?? "–";
  $("totals").textContent = "totals: " +
    OUTCOMES.map(([k, label]) => `${label} ${s.totals[k]}`).join(" · ") +
    ` · cached cities ${s.cache.cities}`;
  if (!scenariosLoaded && s.proxy.reachable) loadScenarios();
}

async function poll() {
  if (pending) return;
  pending = true;
  try {
    const r = await api("GET", "/status");
    if (!r.ok) throw new Error("status " + r.status);
    render(r.data);
    $("connection").textContent = "live";
    $("connection").className = "pill live";
  } catch (e) {
    $("connection").textContent = "app unreachable";
    $("connection").className = "pill down";
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

function legend(id, entries) {
  $(id).replaceChildren(...entries.flatMap(([label, color]) => {
    const dot = document.createElement("i");
    dot.style.background = css(color);
    return [dot, document.createTextNode(label)];
  }));
}

function setup() {
  legend("legend", OUTCOMES.map(([, label, color]) => [label, color]));
  legend("latency-legend", [["p50", "--ok"], ["p95", "--error"]]);
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
  $("reset").addEventListener("click", async () => { await api("POST", "/reset", {}); poll(); });
  poll();
  setInterval(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", setup);
