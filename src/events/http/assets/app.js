// hark live page: reads the daemon's Server-Sent Events (/events), one JSON line
// per message (the socket protocol plus `mel` columns), and draws them. No library.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 200;

let classes = [];
let active = new Set(); // labels with an open event
const openRows = new Map(); // event id -> table row
let eventCount = 0;

// ---- spectrogram -----------------------------------------------------------
const spec = $("spec");
const ctx = spec.getContext("2d");
let lo = null, hi = null; // running colour range of the log-mel values

// A compact perceptual colour map (viridis-like), 5 stops.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(x) {
  x = Math.min(1, Math.max(0, x)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  const a = STOPS[i], b = STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

function drawColumn(mel) {
  const n = mel.length;
  if (spec.height !== n) { spec.height = n; }
  let mn = Infinity, mx = -Infinity;
  for (const v of mel) { if (v < mn) mn = v; if (v > mx) mx = v; }
  // Follow the signal's range slowly so quiet and loud scenes both stay visible.
  lo = lo === null ? mn : Math.min(mn, lo * 0.98 + mn * 0.02);
  hi = hi === null ? mx : Math.max(mx, hi * 0.98 + mx * 0.02);
  const span = Math.max(1e-6, hi - lo);
  // Scroll left by one pixel, draw the new column at the right edge.
  ctx.drawImage(spec, -1, 0);
  const img = ctx.createImageData(1, n);
  for (let b = 0; b < n; b++) {
    const [r, g, bl] = colour((mel[b] - lo) / span);
    const y = n - 1 - b; // low bands at the bottom
    img.data[y * 4] = r; img.data[y * 4 + 1] = g; img.data[y * 4 + 2] = bl; img.data[y * 4 + 3] = 255;
  }
  ctx.putImageData(img, spec.width - 1, 0);
}

// ---- scores (top-k) --------------------------------------------------------
let lastScores = {};
function drawScores() {
  const k = parseInt($("topk").value, 10) || 10;
  const entries = Object.entries(lastScores).sort((a, b) => b[1] - a[1]).slice(0, k);
  const ol = $("scores");
  while (ol.children.length < entries.length) {
    const li = document.createElement("li");
    li.className = "score";
    li.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span></span><span class="val"></span>';
    ol.appendChild(li);
  }
  while (ol.children.length > entries.length) { ol.removeChild(ol.lastChild); }
  entries.forEach(([label, v], i) => {
    const li = ol.children[i];
    li.dataset.label = label;
    li.classList.toggle("active", active.has(label));
    li.querySelector(".name").textContent = label;
    li.querySelector(".fill").style.width = (100 * v).toFixed(1) + "%";
    li.querySelector(".val").textContent = v.toFixed(2);
  });
}
$("topk").addEventListener("change", drawScores);

// ---- events ----------------------------------------------------------------
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function onStart(m) {
  active.add(m.label);
  const tr = document.createElement("tr");
  tr.className = "event open";
  tr.dataset.id = m.id;
  tr.dataset.label = m.label;
  tr.append(cell(m.label), cell(m.t.toFixed(2)), cell("…"), cell(m.score.toFixed(2)), cell(m.wall || ""));
  const tbody = $("events");
  tbody.insertBefore(tr, tbody.firstChild);
  openRows.set(m.id, tr);
  while (tbody.children.length > MAX_EVENTS) { tbody.removeChild(tbody.lastChild); }
  eventCount += 1;
  $("event-count").textContent = String(eventCount);
}

function onStop(m) {
  active.delete(m.label);
  let tr = openRows.get(m.id);
  if (!tr) { onStart({ id: m.id, label: m.label, t: m.t_start, score: m.peak, wall: "" }); tr = openRows.get(m.id); }
  openRows.delete(m.id);
  tr.className = "event closed";
  tr.children[2].textContent = m.t_end.toFixed(2);
  tr.children[3].textContent = m.peak.toFixed(2);
}

// ---- status ----------------------------------------------------------------
function onStatus(m) {
  const st = $("st-state");
  st.textContent = m.state;
  st.className = "state-" + m.state;
  $("st-t").textContent = m.t.toFixed(1) + " s";
  $("st-windows").textContent = String(m.windows);
  $("st-open").textContent = String(m.open_events);
  $("st-dsamples").textContent = String(m.dropped_samples);
  $("st-dframes").textContent = String(m.dropped_frames);
}

function onHello(m) {
  classes = m.classes || [];
  $("model").textContent = m.model;
  $("source").textContent = m.source;
  if (Object.keys(lastScores).length === 0) {
    for (const c of classes) lastScores[c] = 0;
    drawScores();
  }
}

// ---- connection ------------------------------------------------------------
function setConn(on, text) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill " + (on ? "on" : "off");
}

const es = new EventSource("events");
es.onopen = () => setConn(true, "live");
es.onerror = () => setConn(false, "disconnected — retrying");
es.onmessage = (e) => {
  let m;
  try { m = JSON.parse(e.data); } catch (_) { return; }
  switch (m.type) {
    case "hello": onHello(m); break;
    case "start": onStart(m); drawScores(); break;
    case "stop": onStop(m); drawScores(); break;
    case "status": onStatus(m); break;
    case "scores": lastScores = m.scores; drawScores(); break;
    case "mel": drawColumn(m.mel); break;
  }
};
