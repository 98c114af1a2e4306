#include "proxy/tracez_page.h"

namespace sidetrace::proxy {

// clang-format off
const std::string_view kTracezPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sidetrace /tracez</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d232b;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header h1{font-size:18px;margin:0}
header form{margin-left:auto}
input{font:13px monospace;width:300px;padding:3px}
main{padding:12px 20px}
section{background:#fff;border:1px solid #d8dde3;border-radius:6px;margin-bottom:14px;padding:8px 12px}
h2{font-size:15px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{font-weight:600;color:#5a6573}
td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#1f5fbf;cursor:pointer;text-decoration:none}
.err{color:#b3261e;font-weight:600}
.mono{font-family:monospace}
.muted{color:#7a8592}
.lists{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
.row{display:grid;grid-template-columns:320px 1fr 90px;align-items:center;border-bottom:1px solid #eef0f3;cursor:pointer}
.row:hover{background:#f0f4fa}
.label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding:3px 4px}
.track{position:relative;height:18px}
.bar{position:absolute;top:3px;height:12px;border-radius:2px;background:#4a8fe7;min-width:2px}
.bar.CLIENT{background:#5bb974}
.bar.ERROR{background:#d93025}
.row .num{text-align:right;padding-right:6px;font-variant-numeric:tabular-nums}
.attrs{grid-column:1/4;display:none;padding:4px 12px 8px 24px;background:#fafbfc}
.attrs.open{display:block}
.attrs td{font:12px monospace;white-space:normal;word-break:break-all}
</style>
</head>
<body>
<header><h1>sidetrace /tracez</h1><span id="memory" class="muted"></span>
<form id="find"><input id="trace-id" placeholder="find trace id (32 hex digits)" spellcheck="false"> <button>Find</button></form></header>
<main>
<section id="trace-view" hidden><h2>Trace <span id="trace-title" class="mono"></span> <a id="close">×</a></h2>
<div id="waterfall"></div></section>
<section><h2>Routes</h2><table id="routes"><thead><tr><th>route</th><th>requests</th><th>errors</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr></thead><tbody></tbody></table></section>
<div class="lists">
<section><h2>Latest</h2><table id="latest"></table></section>
<section><h2>Slowest</h2><table id="slowest"></table></section>
<section><h2>Failed</h2><table id="failed"></table></section>
</div>
<p id="status" class="muted"></p>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function fmt(ms) { return Number(ms).toFixed(ms < 10 ? 3 : 1); }
async function getJson(query) {
  const r = await fetch("/tracez?format=json" + query, {cache: "no-store"});
  return {status: r.status, body: await r.json()};
}
function traceTable(table, traces) {
  table.replaceChildren();
  const head = el("tr");
  for (const h of ["trace", "name", "ms", "spans"]) head.append(el("th", h));
  table.append(head);
  if (traces.length === 0) { const tr = el("tr"); tr.append(el("td", "none", "muted")); table.append(tr); }
  for (const t of traces) {
    const tr = el("tr");
    const link = el("a", t.trace_id.slice(0, 16) + "…", "mono" + (t.error ? " err" : ""));
    link.title = t.trace_id;
    link.href = "#trace=" + t.trace_id;
    const td = el("td"); td.append(link); tr.append(td);
    tr.append(el("td", t.name + (t.error ? "  (error)" : ""), t.error ? "err" : ""));
    tr.append(el("td", fmt(t.duration_ms), "num"));
    tr.append(el("td", t.spans, "num"));
    tr.dataset.traceId = t.trace_id;
    table.append(tr);
  }
}
async function loadSummary() {
  const {body: s} = await getJson("");
  $("memory").textContent = `${s.traces} traces, ${s.spans} spans, ${s.bytes_used} of ${s.max_bytes} bytes`;
  const tbody = $("routes").tBodies[0];
  tbody.replaceChildren();
  for (const r of s.routes) {
    const tr = el("tr");
    tr.append(el("td", r.route));
    tr.append(el("td", r.count, "num"));
    tr.append(el("td", r.errors, "num" + (r.errors ? " err" : "")));
    for (const k of ["p50_ms", "p90_ms", "p99_ms"]) tr.append(el("td", fmt(r[k]), "num"));
    tbody.append(tr);
  }
  traceTable($("latest"), s.latest);
  traceTable($("slowest"), s.slowest);
  traceTable($("failed"), s.failed);
}
function depthOf(span, byId) {
  let d = 0;
  for (let p = byId.get(span.parent_span_id); p && d < 32; p = byId.get(p.parent_span_id)) d++;
  return d;
}
async function showTrace(id) {
  $("trace-view").hidden = false;
  $("trace-title").textContent = id;
  const box = $("waterfall");
  box.replaceChildren();
  const {status, body} = await getJson("&trace_id=" + encodeURIComponent(id));
  if (status !== 200) { box.append(el("p", body.error || ("HTTP " + status), "err")); return; }
  const spans = body.spans;
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const total = Math.max(...spans.map((s) => s.start_offset_ms + s.duration_ms), 0.001);
  for (const s of spans) {
    const row = el("div", undefined, "row span");
    row.dataset.kind = s.kind;
    const label = el("div", undefined, "label");
    label.style.paddingLeft = (4 + 16 * depthOf(s, byId)) + "px";
    label.append(el("span", s.kind + " ", "muted"), el("span", s.name, "span-name" + (s.status === "ERROR" ? " err" : "")));
    const track = el("div", undefined, "track");
    const bar = el("div", undefined, "bar " + s.kind + (s.status === "ERROR" ? " ERROR" : ""));
    bar.style.left = (100 * s.start_offset_ms / total) + "%";
    bar.style.width = (100 * s.duration_ms / total) + "%";
    bar.title = `${s.name}: ${fmt(s.duration_ms)} ms`;
    track.append(bar);
    const attrs = el("div", undefined, "attrs");
    const table = el("table");
    const rows = [["span_id", s.span_id], ["parent_span_id", s.parent_span_id], ["status", s.status + (s.status_message ? ": " + s.status_message : "")], ["start", `+${fmt(s.start_offset_ms)} ms`]];
    for (const [k, v] of Object.entries(s.attributes)) rows.push([k, v]);
    for (const l of s.links) rows.push(["link", `${l.trace_id} / ${l.span_id}`]);
    for (const [k, v] of rows) { const tr = el("tr"); tr.append(el("td", k), el("td", v)); table.append(tr); }
    attrs.append(table);
    row.append(label, track, el("div", fmt(s.duration_ms) + " ms", "num"), attrs);
    row.addEventListener("click", () => attrs.classList.toggle("open"));
    box.append(row);
  }
}
function route() {
  const m = /trace=([0-9a-f]{32})/.exec(location.hash) || /trace_id=([0-9a-f]{32})/.exec(location.search);
  if (m) showTrace(m[1]).catch((e) => { $("status").textContent = "error: " + e; });
  else $("trace-view").hidden = true;
}
$("find").addEventListener("submit", (e) => {
  e.preventDefault();
  location.hash = "trace=" + $("trace-id").value.trim().toLowerCase();
});
$("close").addEventListener("click", () => { location.hash = ""; });
window.addEventListener("hashchange", route);
loadSummary().then(() => { $("status").textContent = "loaded " + new Date().toISOString(); })
  .catch((e) => { $("status").textContent = "error: " + e; });
route();
</script>
</body>
</html>
)PAGE";
// clang-format on

}  // namespace sidetrace::proxy
