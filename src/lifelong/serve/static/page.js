// The live page of `lifelong serve` (see page.py): polls the JSON API every second and redraws the
// versions table and the guard-accuracy chart. Data are written with textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
let key = null;
let timer = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function percent(x) {
  return x === undefined || x === null ? "" : (100 * x).toFixed(1);
}

async function get(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function taskOrder(tasks, versions) {
  const names = tasks.map((t) => t.name);
  for (const v of versions) {
    for (const name of Object.keys(v.guard || {})) if (!names.includes(name)) names.push(name);
  }
  return names;
}

function renderSummary(state) {
  const parts = [
    "serving version " + (state.version ?? "none"),
    "learner " + state.learner,
    "backlog " + state.backlog,
    "feedback " + state.feedback + " rows",
  ];
  if (state.promoted !== undefined) parts.push(state.promoted + " promoted, " + state.rejected + " rejected");
  document.getElementById("summary").textContent = parts.join(" · ");
}

function renderTable(versions, names) {
  const head = document.getElementById("versions-head");
  head.replaceChildren(
    ...["version", "status", "parent", "trained on", "method"].map((h) => el("th", h)),
    ...names.map((n) => el("th", n, "task")),
    el("th", "why"),
  );
  const rows = [...versions].sort((a, b) => b.version - a.version).map((v) => {
    const tr = el("tr", null, "status-" + v.status);
    tr.dataset.version = v.version;
    tr.append(el("td", v.version), el("td", v.status), el("td", v.parent ?? ""), el("td", v.trained_on ?? ""));
    tr.append(el("td", v.method ?? "", "method"));
    for (const n of names) tr.append(el("td", percent((v.guard || {})[n]), "number"));
    tr.append(el("td", v.reason ?? "", "reason"));
    return tr;
  });
  document.getElementById("versions-body").replaceChildren(...rows);
}

function renderChart(versions, names) {
  const W = 720, H = 260, left = 44, right = 150, top = 12, bottom = 34;
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", id: "guard-chart" });
  const ordered = [...versions].sort((a, b) => a.version - b.version);
  const n = Math.max(ordered.length, 2);
  const x = (i) => left + (i * (W - left - right)) / (n - 1);
  const y = (acc) => top + (1 - acc) * (H - top - bottom);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    plot.append(svg("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: "grid" }));
    const label = svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = 100 * tick + "%";
    plot.append(label);
  }
  const every = Math.ceil(ordered.length / 16); // at most 16 labels, so they never overlap
  ordered.forEach((v, i) => {
    if (i % every !== 0) return;
    const label = svg("text", { x: x(i), y: H - bottom + 16, "text-anchor": "middle", class: "axis" });
    label.textContent = "v" + v.version;
    plot.append(label);
  });
  names.forEach((name, t) => {
    const color = COLORS[t % COLORS.length];
    const served = ordered
      .map((v, i) => [v, i])
      .filter(([v]) => v.status !== "rejected" && v.status !== "candidate" && (v.guard || {})[name] !== undefined);
    if (served.length > 1) {
      const points = served.map(([v, i]) => `${x(i)},${y(v.guard[name])}`).join(" ");
      plot.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 2 }));
    }
    ordered.forEach((v, i) => {
      const acc = (v.guard || {})[name];
      if (acc === undefined || acc === null) return;
      const hollow = v.status === "rejected" || v.status === "candidate";
      plot.append(svg("circle", { cx: x(i), cy: y(acc), r: 3.5, stroke: color, fill: hollow ? "white" : color }));
    });
    const legend = svg("text", { x: W - right + 12, y: top + 14 + 16 * t, fill: color, class: "legend" });
    legend.textContent = name;
    plot.append(legend);
  });
  document.getElementById("chart").replaceChildren(plot);
}

async function refresh() {
  try {
    const [models, state, tasks] = await Promise.all([get("/v1/models"), get("/v1/state"), get("/v1/tasks")]);
    const names = taskOrder(tasks.tasks || [], models.versions || []);
    renderSummary(state);
    renderTable(models.versions || [], names);
    renderChart(models.versions || [], names);
    document.getElementById("main").hidden = false;
    document.getElementById("login").hidden = true;
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      askForKey(error.message);
    } else {
      document.getElementById("summary").textContent = "cannot reach the service: " + error.message;
    }
  }
}

function askForKey(why) {
  clearInterval(timer);
  sessionStorage.removeItem("lifelong-key");
  document.getElementById("login-why").textContent = why || "";
  document.getElementById("login").hidden = false;
  document.getElementById("summary").textContent = "an API key of any scope shows the versions";
}

function start(newKey) {
  key = newKey;
  sessionStorage.setItem("lifelong-key", key);
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) history.replaceState(null, "", location.pathname); // keep the key out of the address bar
  const saved = fromHash || sessionStorage.getItem("lifelong-key");
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start(document.getElementById("key").value.trim());
  });
  if (saved) start(saved);
  else askForKey("");
});
