// battery-twin dashboard: one EventSource (/api/stream), incremental by seq; charts by uPlot (vendored).
// All text from the agent goes in with textContent (cell ids and messages come from devices).
"use strict";
(function () {
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4f46e5", "#65a30d", "#0d9488", "#c2410c", "#7c3aed", "#be123c", "#0369a1", "#4d7c0f"];
  const S = {
    rig: "", cells: new Map(), byId: new Map(), selected: [], maxSelected: 16, windowMs: 300000, intervalS: 1,
    series: new Map(), latest: new Map(), cycles: new Map(), events: [], alarms: new Map(), alarmWindowMs: 3600000,
    health: null, seq: 0, lastTick: 0, ticks: 0, es: null, dirty: true,
  };
  const charts = {};
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; };
  const fmt = (x, d) => (x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
  const time = (ms) => new Date(ms).toLocaleTimeString();
  // Time axes: whole-second steps at least, and one label per tick in the browser's locale (uPlot's default
  // prints a second line with the date, which collides with its neighbours in a narrow chart).
  const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 604800, 1209600, 2592000, 7776000, 31536000];
  function tickLabel(sec, incr, spanS) {
    const d = new Date(sec * 1000);
    if (incr >= 86400) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const hm = { hour: "2-digit", minute: "2-digit" };
    if (spanS > 86400) return d.toLocaleString(undefined, { month: "short", day: "numeric", ...hm });
    return d.toLocaleTimeString(undefined, incr >= 60 ? hm : { ...hm, second: "2-digit" });
  }
  const timeAxis = () => ({ space: 110, incrs: TIME_INCRS,
    values: (u, splits, ax, space, incr) => splits.map((s) => tickLabel(s, incr, u.scales.x.max - u.scales.x.min)) });
  const color = (id) => PALETTE[Math.max(0, S.selected.indexOf(id)) % PALETTE.length];

  // ------------------------------------------------------------------ stream
  function connect() {
    if (S.es) S.es.close();
    const q = S.selected.length && !S.auto ? "?cells=" + encodeURIComponent(S.selected.join(",")) : "";
    const es = new EventSource("/api/stream" + q);
    S.es = es;
    es.addEventListener("init", (m) => onInit(JSON.parse(m.data)));
    es.addEventListener("tick", (m) => onTick(JSON.parse(m.data)));
    es.onerror = () => setStatus("connecting");
  }

  function onInit(d) {
    S.rig = d.rig; S.windowMs = d.window_s * 1000; S.intervalS = d.interval_s; S.maxSelected = d.max_selected;
    S.alarmWindowMs = d.alarm_window_s * 1000;
    S.cells = new Map(d.cells.map(([idx, id]) => [idx, id]));
    S.byId = new Map(d.cells.map(([idx, id]) => [id, idx]));
    if (!d.resumed) { S.series = new Map(); S.cycles = new Map(); S.events = []; S.alarms = new Map(); }
    S.selected = d.selected;
    for (const id of S.selected) if (!S.series.has(id)) S.series.set(id, { ts: [], v: [], i: [], t: [], seq: [] });
    addReadings(d.readings); setLatest(d.latest);
    addCycles(d.cycles, true); addEvents(d.alarms); addEvents(d.events);
    S.health = d.health; S.seq = d.seq;
    history.replaceState(null, "", "#cells=" + encodeURIComponent(S.selected.join(",")));
    $("rig").textContent = d.rig + " · v" + d.version;
    $("window").textContent = "(last " + Math.round(d.window_s / 60) + " min)";
    $("max-selected").textContent = d.max_selected;
    $("alarm-window").textContent = "(alarm/critical in the last " + Math.round(d.alarm_window_s / 60) + " min)";
    buildTiles(); buildCharts(); markTick(); render();
  }

  function onTick(d) {
    const sh = d.shared;
    if (sh.cells) { for (const [idx, id] of sh.cells) { S.cells.set(idx, id); S.byId.set(id, idx); } buildTiles(); }
    if (d.selected) { S.selected = d.selected; S.series = new Map(); connect(); return; } // the agent chose the cells
    S.seq = d.seq; addReadings(d.readings);
    setLatest(sh.latest); addCycles(sh.cycles, false); addEvents(sh.events);
    if (sh.health) S.health = sh.health;
    markTick(); S.dirty = true;
  }

  function markTick() { S.lastTick = Date.now(); S.ticks++; setStatus("live"); $("updated").textContent = "updated " + time(S.lastTick) + " · seq " + S.seq; }
  function setStatus(s) { const e = $("status"); e.dataset.state = s; e.textContent = s; }
  setInterval(() => { if (S.lastTick && Date.now() - S.lastTick > 3000 * Math.max(1, S.intervalS) && $("status").dataset.state === "live") setStatus("stale"); }, 1000);

  // ------------------------------------------------------------------ data
  function addReadings(r) {
    let newest = 0;
    for (let k = 0; k < r.seq.length; k++) {
      const id = S.cells.get(r.cell[k]); const s = S.series.get(id);
      if (!s) continue;
      if (s.seq.length && r.seq[k] <= s.seq[s.seq.length - 1]) continue; // already have it (resume)
      s.ts.push(r.ts[k]); s.v.push(r.v[k]); s.i.push(r.i[k]); s.t.push(r.t[k]); s.seq.push(r.seq[k]);
      if (r.ts[k] > newest) newest = r.ts[k];
    }
    // One window for the rig, ending at the newest reading of any shown cell: while a simulated past is being
    // replayed, a cell whose data is still days behind is left out rather than stretching the time axis.
    let last = 0; for (const s of S.series.values()) if (s.ts.length) last = Math.max(last, s.ts[s.ts.length - 1]);
    for (const s of S.series.values()) {
      let cut = 0; while (cut < s.ts.length && s.ts[cut] < last - S.windowMs) cut++;
      if (cut) for (const f of ["ts", "v", "i", "t", "seq"]) s[f].splice(0, cut);
    }
  }

  function setLatest(r) {
    for (let k = 0; k < r.seq.length; k++) {
      const idx = r.cell[k];
      S.latest.set(idx, { ts: r.ts[k], v: r.v[k], i: r.i[k], t: r.t[k], seq: r.seq[k] });
      const tile = document.querySelector('.tile[data-idx="' + idx + '"] .v');
      if (tile) tile.textContent = fmt(r.v[k], 3) + " V";
    }
  }

  function addCycles(rows, reset) {
    if (reset) for (const id of S.selected) S.cycles.set(id, new Map());
    for (const c of rows) {
      const m = S.cycles.get(c.cell); if (!m) continue; // only the cells on show
      const prev = m.get(c.cycle);
      if (prev && prev.seq > c.seq) continue;
      if (c.predicted_capacity_ah == null && prev && prev.predicted_capacity_ah) c.predicted_capacity_ah = null;
      m.set(c.cycle, c);
    }
  }

  function alarmKey(e) { return e.kind + "|" + (e.cell || ""); }
  function addEvents(evs) {
    const seen = new Set(S.events.map((e) => e.seq));
    for (const e of evs) {
      if (seen.has(e.seq)) continue;
      S.events.push(e); seen.add(e.seq);
      const key = alarmKey(e), cleared = e.data && (e.data.cleared === true || e.data.active === false);
      if ((e.level === "alarm" || e.level === "critical") && !cleared) S.alarms.set(key, e);
      else if (cleared || e.level === "info") S.alarms.delete(key);
    }
    S.events.sort((a, b) => a.seq - b.seq);
    if (S.events.length > 200) S.events.splice(0, S.events.length - 200);
  }

  // ------------------------------------------------------------------ cell picker
  function buildTiles() {
    const box = $("cells"); box.textContent = "";
    const ids = [...S.byId.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    for (const id of ids) {
      const idx = S.byId.get(id), b = el("button", null, "tile");
      b.type = "button"; b.dataset.cell = id; b.dataset.idx = idx; b.setAttribute("role", "option");
      b.setAttribute("aria-selected", S.selected.includes(id) ? "true" : "false");
      b.append(el("span", id), el("span", S.latest.has(idx) ? fmt(S.latest.get(idx).v, 3) + " V" : "–", "v"));
      b.addEventListener("click", () => toggle(id));
      box.append(b);
    }
    $("cell-count").textContent = "(" + ids.length + ")";
    applyFilter();
    const chips = $("selected"); chips.textContent = "";
    for (const id of S.selected) { const c = el("span", id, "chip"); c.style.background = color(id); chips.append(c); }
  }

  function applyFilter() {
    const f = $("cell-filter").value.trim().toLowerCase();
    for (const t of $("cells").children) t.hidden = !!f && !t.dataset.cell.toLowerCase().includes(f);
  }
  $("cell-filter").addEventListener("input", applyFilter);

  function toggle(id) {
    S.auto = false;  // the person chose: the agent no longer picks the cells on show
    let sel = S.selected.filter((x) => x !== id);
    if (sel.length === S.selected.length) { sel.push(id); if (sel.length > S.maxSelected) sel.shift(); }
    if (!sel.length) return; // keep at least one cell on show
    S.selected = sel; S.series = new Map(); connect(); setStatus("connecting");
  }

  // ------------------------------------------------------------------ charts
  // uPlot wants one x array shared by all series: merge the cells' x values (cells may sample at other times).
  function align(xsList, ysList) {
    const all = new Set(); for (const xs of xsList) for (const x of xs) all.add(x);
    const xs = Float64Array.from(all).sort(); const pos = new Map(); xs.forEach((x, k) => pos.set(x, k));
    const out = [Array.from(xs)];
    ysList.forEach((ys, j) => { const col = new Array(xs.length).fill(null); xsList[j].forEach((x, k) => { col[pos.get(x)] = ys[k]; }); out.push(col); });
    return out;
  }

  function makeChart(key, title, xTime, yLabel, extra) {
    const host = $("chart-" + key); host.textContent = "";
    const series = [{ label: xTime ? "time" : "cycle" }];
    for (const id of S.selected) series.push({ label: id, stroke: color(id), width: 1.5, spanGaps: true, points: { show: false } });
    for (const s of (extra && extra.series) || []) series.push(s);
    const opts = {
      title, width: Math.max(160, host.clientWidth || 500), height: 170, series, legend: { show: S.selected.length <= 8 },
      scales: { x: { time: xTime, ...(extra && extra.xScale) } }, axes: [xTime ? timeAxis() : { label: "cycle" }, { label: yLabel, size: 60 }],
      cursor: { drag: { x: false, y: false } }, hooks: (extra && extra.hooks) || {},
    };
    const data = [[]]; for (let k = 1; k < series.length; k++) data.push([]);
    charts[key] = new uPlot(opts, data, host);
  }
  // Charts follow their panel's width (the grid reflows when the window or the panel changes size).
  const resizer = new ResizeObserver((entries) => {
    for (const e of entries) {
      const c = Object.values(charts).find((u) => u.root.parentElement === e.target);
      const w = Math.max(160, Math.floor(e.contentRect.width));
      if (c && Math.abs(c.width - w) > 2) c.setSize({ width: w, height: c.height });
    }
  });
  for (const host of document.querySelectorAll(".chart")) resizer.observe(host);

  function buildCharts() {
    for (const c of Object.values(charts)) c.destroy();
    makeChart("voltage", "Voltage of each shown cell.", true, "V");
    makeChart("current", "Current of each cell (positive while charging).", true, "A");
    makeChart("temperature", "Temperature of each cell.", true, "°C");
    makeChart("cap-time", "Discharge capacity by date.", true, "Ah");
    makeChart("cap-cycle", "Discharge capacity by cycle.", false, "Ah");
    // Forecast (dashed) with its 10-90 % band (dotted) when the SOH model gives one; the predicted end of life is a
    // vertical line in the cell's colour (drawEol).
    const band = (id, what) => ({ label: id + " " + what, stroke: color(id) + "88", dash: [2, 3], width: 1, spanGaps: true, points: { show: false } });
    makeChart("fade", "Measured capacity (solid) and forecast (dashed, band dotted); a vertical line marks the predicted end of life.", false, "Ah", {
      series: S.selected.flatMap((id) => [{ label: id + " forecast", stroke: color(id), dash: [6, 4], width: 1.5, spanGaps: true, points: { show: false } },
        band(id, "10 %"), band(id, "90 %")]),
      xScale: { range: (u, lo, hi) => { const eol = Math.max(0, ...eols().map((e) => e[1])); return [lo, Math.max(hi, eol * 1.03)]; } },
      hooks: { draw: [drawEol] },
    });
    const host = $("chart-temp-hist"); host.textContent = "";
    const bars = uPlot.paths.bars({ size: [0.45, 40], align: 0 });
    charts["temp-hist"] = new uPlot({
      title: "Cycles of the shown cells per 1 °C of cycle temperature.", width: Math.max(160, host.clientWidth || 500), height: 190,
      scales: { x: { time: false } }, axes: [{ label: "°C" }, { label: "cycles", size: 50 }],
      series: [{ label: "°C" }, { label: "mean temperature", fill: "#2563eb88", stroke: "#2563eb", paths: bars, points: { show: false } },
        { label: "max temperature", fill: "#dc262688", stroke: "#dc2626", paths: bars, points: { show: false } }],
    }, [[], [], []], host);
    S.dirty = true;
  }

  function eols() {
    const out = [];
    for (const id of S.selected) { const last = lastCycle(id); if (last && last.predicted_eol_cycle != null) out.push([id, last.predicted_eol_cycle]); }
    return out;
  }
  function drawEol(u) {
    const ctx = u.ctx; ctx.save(); ctx.setLineDash([3, 3]); ctx.lineWidth = 1.5;
    for (const [id, eol] of eols()) {
      const x = u.valToPos(eol, "x", true); if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = color(id); ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  }
  function cyclesOf(id) { const m = S.cycles.get(id); return m ? [...m.values()].sort((a, b) => a.cycle - b.cycle) : []; }
  function lastCycle(id) { const c = cyclesOf(id); return c.length ? c[c.length - 1] : null; }
  function forecastOf(id) {
    for (const c of cyclesOf(id).reverse()) if (c.predicted_capacity_ah) return c;
    return null;
  }

  // ------------------------------------------------------------------ render (once per animation frame when dirty)
  function render() {
    if (!S.dirty || !charts.voltage) return;
    S.dirty = false;
    const sel = S.selected.map((id) => S.series.get(id) || { ts: [], v: [], i: [], t: [], seq: [] });
    const xs = sel.map((s) => s.ts.map((t) => t / 1000));
    charts.voltage.setData(align(xs, sel.map((s) => s.v)));
    charts.current.setData(align(xs, sel.map((s) => s.i)));
    charts.temperature.setData(align(xs, sel.map((s) => s.t)));
    renderLiveTable(sel);
    const cyc = S.selected.map(cyclesOf);
    charts["cap-time"].setData(align(cyc.map((c) => c.map((r) => r.ts / 1000)), cyc.map((c) => c.map((r) => r.discharge_ah))));
    charts["cap-cycle"].setData(align(cyc.map((c) => c.map((r) => r.cycle)), cyc.map((c) => c.map((r) => r.discharge_ah))));
    const n = cyc.reduce((a, c) => a + c.length, 0);
    $("cap-empty").textContent = n ? n + " cycles shown." : EMPTY_CYCLES;
    renderFade(cyc); renderTemp(cyc); renderEvents(); renderHealth();
  }
  (function frame() { try { render(); } finally { requestAnimationFrame(frame); } })();

  function row(tbody, cells, attrs) {
    const tr = el("tr"); for (const [k, v] of Object.entries(attrs || {})) tr.dataset[k] = v;
    for (const c of cells) { const td = el("td", c && c.text != null ? c.text : c); if (c && c.cls) td.className = c.cls; if (c && c.value != null) td.dataset.value = c.value; tr.append(td); }
    tbody.append(tr);
  }

  function renderLiveTable(sel) {
    const tb = $("live-table").tBodies[0]; tb.textContent = "";
    S.selected.forEach((id, j) => {
      const s = sel[j], k = s.ts.length - 1;
      if (k < 0) { row(tb, [id, "–", "–", "–", "–", "–"], { cell: id }); return; }
      row(tb, [{ text: id, cls: "cell" }, { text: fmt(s.v[k], 4), value: s.v[k] }, { text: fmt(s.i[k], 3), value: s.i[k] },
        { text: fmt(s.t[k], 2), value: s.t[k] }, { text: time(s.ts[k]), value: s.ts[k] }, { text: String(s.seq[k]), value: s.seq[k] }], { cell: id, seq: s.seq[k] });
    });
  }

  function renderFade(cyc) {
    const xs = [], ys = [];
    cyc.forEach((c) => { xs.push(c.map((r) => r.cycle)); ys.push(c.map((r) => r.discharge_ah)); });
    S.selected.forEach((id) => {
      const f = forecastOf(id);
      const x = f ? f.predicted_capacity_ah.map((_, k) => f.cycle + 1 + k) : [];
      for (const key of ["predicted_capacity_ah", "predicted_capacity_lower_ah", "predicted_capacity_upper_ah"]) {
        xs.push(f && f[key] ? x : []); ys.push(f && f[key] ? f[key] : []);
      }
    });
    charts.fade.setData(align(xs, ys));
    const tb = $("fade-table").tBodies[0]; tb.textContent = "";
    $("fade-empty").textContent = S.selected.some((id) => lastCycle(id)) ? "" : EMPTY_CYCLES +
      " Forecasts and the predicted end of life follow once the SOH model has enough cycles of a cell.";
    for (const id of S.selected) {
      const c = lastCycle(id);
      if (!c) { row(tb, [id, "–", "–", "–", "–", "–", "–"], { cell: id }); continue; }
      row(tb, [id, { text: String(c.cycle), value: c.cycle }, { text: fmt(c.discharge_ah, 4), value: c.discharge_ah },
        { text: fmt(c.soh, 3), value: c.soh }, { text: fmt(c.predicted_eol_cycle, 0), value: c.predicted_eol_cycle },
        { text: fmt(c.predicted_cycle_life, 0), value: c.predicted_cycle_life }, { text: c.model_version || "–", value: c.model_version }], { cell: id });
    }
  }

  // What fills the cycle views, and roughly when (a cycle ends with its discharge).
  const EMPTY_CYCLES = "No completed cycles yet: each point is one full charge and discharge of a shown cell, so the first " +
    "appears when a cell finishes its first discharge (about 2-3 h at 1C on a simulated rig; a simulator with " +
    "history_cycles starts with its past within a minute).";
  function renderTemp(cyc) {
    const mean = new Map(), max = new Map(); let lo = Infinity, hi = -Infinity, nMean = 0;
    const add = (m, t) => { if (t == null) return; const b = Math.floor(t); m.set(b, (m.get(b) || 0) + 1); lo = Math.min(lo, b); hi = Math.max(hi, b); };
    for (const c of cyc) for (const r of c) { add(mean, r.temperature_mean_c); add(max, r.temperature_max_c); if (r.temperature_mean_c != null) nMean++; }
    const x = [], a = [], b = [];
    if (lo <= hi) for (let t = lo; t <= hi; t++) { x.push(t); a.push(mean.get(t) || 0); b.push(max.get(t) || 0); }
    charts["temp-hist"].setData([x, a, b]);
    const maxes = cyc.flat().map((r) => r.temperature_max_c).filter((t) => t != null).sort((p, q) => p - q);
    const pct = (p) => maxes[Math.min(maxes.length - 1, Math.floor(p * maxes.length))];
    const s = $("temp-summary");
    s.dataset.cycles = nMean;
    s.textContent = maxes.length ? nMean + " cycles; max temperature per cycle: median " + fmt(pct(0.5), 1) + " °C, 95th percentile " +
      fmt(pct(0.95), 1) + " °C, highest " + fmt(maxes[maxes.length - 1], 1) + " °C." : EMPTY_CYCLES;
  }

  function renderEvents() {
    const ul = $("alarms"); ul.textContent = "";
    const since = Date.now() - S.alarmWindowMs;
    const active = [...S.alarms.values()].filter((e) => e.ts >= since).sort((a, b) => b.seq - a.seq);
    for (const e of active) { const li = el("li"); li.dataset.seq = e.seq; li.dataset.kind = e.kind; li.append(el("b", e.kind + (e.cell ? " · " + e.cell : "")), el("span", " " + time(e.ts) + " — " + e.message)); ul.append(li); }
    if (!active.length) ul.append(el("li", "no active alarms", "none"));
    const tb = $("events-table").tBodies[0]; tb.textContent = "";
    for (const e of [...S.events].reverse().slice(0, 100))
      row(tb, [time(e.ts), { text: e.level, cls: "lvl-" + e.level }, e.kind, e.source, e.cell || "", e.message], { seq: e.seq });
    if (!S.events.length) {
      row(tb, [{ text: "No events yet: drivers, the twin's alarms and the store report here as they happen.", cls: "muted" }]);
      tb.lastChild.firstChild.colSpan = 6;
    }
  }

  function renderHealth() {
    const h = S.health; if (!h) return;
    const dl = $("health"); dl.textContent = "";
    const kv = [["uplink", h.uplink_state, "uplink_state"], ["store depth (readings)", h.store_depth_readings, "store_depth_readings"],
      ["store depth (events / cycles)", h.store_depth_events + " / " + h.store_depth_cycles, "store_depth_events"],
      ["oldest unsent", fmt(h.oldest_unsent_age_s, 1) + " s", "oldest_unsent_age_s"],
      ["publish rate", fmt(h.publish_rate_msgs_s, 2) + " msg/s · " + fmt(h.readings_rate_s, 1) + " readings/s", "publish_rate_msgs_s"],
      ["publish errors", h.publish_errors, "publish_errors"], ["dropped readings", h.dropped_readings, "dropped_readings"],
      ["uptime", fmt(h.uptime_s, 0) + " s", "uptime_s"]];
    const r = h.remote; // [remote]: the shadow config version and the models in force (agent/remote)
    if (r) kv.push(["config (shadow)", r.config_version == null ? "file only" : "v" + r.config_version + " " + (r.config_status || ""), "config_version"],
      ["models", Object.entries(r.models || {}).map(([f, v]) => f + " " + (v || "shipped")).join(" · ") || "shipped", "models"]);
    for (const [k, v, key] of kv) { dl.append(el("dt", k)); const dd = el("dd", String(v)); dd.dataset.key = key; dd.dataset.value = key in h ? h[key] : r && JSON.stringify(r[key]); dl.append(dd); }
    const tb = $("drivers-table").tBodies[0]; tb.textContent = "";
    for (const d of h.drivers) row(tb, [d.name, d.type, { text: d.state, cls: d.state === "running" ? "" : "lvl-warning" }, String(d.restarts), String(d.detail.readings), d.last_error || ""], { driver: d.name });
  }

  const fromHash = decodeURIComponent((location.hash.match(/cells=([^&]*)/) || [])[1] || "");
  S.selected = fromHash ? fromHash.split(",").filter(Boolean) : [];
  S.auto = !S.selected.length;  // nothing asked for: the agent picks (and picks again as cells of a new kind appear)
  // For tests and the browser console: render now and return what every chart shows, with the seq it covers.
  function snapshot() {
    S.dirty = true; render();
    const data = {}; for (const [k, c] of Object.entries(charts)) data[k] = c.data.map((a) => Array.from(a));
    const fade = charts.fade, eol = eols().map(([id, c]) => ({ cell: id, cycle: c, shown: c >= fade.scales.x.min && c <= fade.scales.x.max }));
    const timeTicks = {}; for (const k of ["voltage", "cap-time"]) timeTicks[k] = (charts[k].axes[0]._values || []).slice();
    return { seq: S.seq, ticks: S.ticks, selected: S.selected.slice(), charts: data, eol, timeTicks };
  }
  window.btDash = { S, charts, toggle, snapshot };
  connect();
})();
