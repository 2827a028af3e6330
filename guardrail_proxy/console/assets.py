"""The console's stylesheet and script, as constants served under /console/assets/ (no package data files, no
CDN, nothing fetched from the network). Both are served from the console's own origin, so the pages'
Content-Security-Policy allows 'self' only: no inline script, no inline style, no event-handler attributes.

The script does three small things: it remembers the reviewer's name in the browser (localStorage) and fills
it into every mark form; picking a label selects "should have been"; and it does nothing else, so every
page works without it.
"""

from __future__ import annotations

CSS = """
:root { --ink: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc; --card: #fff; --accent: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--bg); }
header { display: flex; align-items: center; gap: 20px; padding: 0 20px; height: 42px; background: #0f172a;
         color: #e2e8f0; position: sticky; top: 0; z-index: 2; }
header .brand { font-weight: 600; letter-spacing: .02em; }
header nav { display: flex; gap: 4px; flex: 1; }
header nav a { color: #cbd5e1; text-decoration: none; padding: 6px 10px; border-radius: 4px; }
header nav a:hover { background: #1e293b; color: #fff; }
header nav a.active { background: #334155; color: #fff; }
header .logout button { background: none; border: 1px solid #475569; color: #cbd5e1; }
main { max-width: 1340px; margin: 0 auto; padding: 14px 20px 40px; }
h1 { font-size: 19px; margin: 0; }
h2 { font-size: 15px; margin: 16px 0 8px; }
h3 { font-size: 14px; margin: 0; }
a { color: var(--accent); }
code, .mono, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
.page-head { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; margin-bottom: 10px; }
.page-head .button-link, .page-head .segmented { margin-left: auto; }
.segmented { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.segmented a { padding: 4px 12px; text-decoration: none; color: var(--ink); background: var(--card); }
.segmented a.active { background: var(--accent); color: #fff; }
button, .button-link { font: inherit; padding: 5px 12px; border-radius: 5px; border: 1px solid #94a3b8;
                       background: var(--card); color: var(--ink); cursor: pointer; text-decoration: none;
                       display: inline-block; }
button[type=submit], .button-link.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
.filters { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: flex-end; padding: 10px 12px;
           background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin-bottom: 12px; }
.filters label { display: flex; flex-direction: column; font-size: 11px; color: var(--muted); gap: 2px; }
.filters label.check { flex-direction: row; align-items: center; gap: 6px; font-size: 12px; color: var(--ink);
                       padding-bottom: 6px; }
.filters input[type=text] { width: 132px; }
input[type=text], input[type=password], select, textarea { font: inherit; padding: 4px 6px; border: 1px solid #cbd5e1;
                                                           border-radius: 4px; background: #fff; color: var(--ink); }
.field-error { display: block; color: #b91c1c; font-size: 12px; max-width: 260px; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 11px; text-transform: uppercase;
     letter-spacing: .03em; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.decisions tbody tr:hover { background: #f1f5f9; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 600;
         background: #e2e8f0; color: #334155; }
.d-allow { background: #dcfce7; color: #166534; } .d-block { background: #fee2e2; color: #991b1b; }
.d-annotate, .d-log { background: #fef3c7; color: #92400e; } .d-rewrite { background: #ede9fe; color: #5b21b6; }
.d-unavailable { background: #fce7f3; color: #9d174d; } .d-unchecked { background: #cffafe; color: #155e75; }
.mark { font-size: 12px; white-space: nowrap; } .mark.ok { color: #15803d; } .mark.wrong { color: #b91c1c; }
.pager { display: flex; gap: 16px; align-items: center; padding: 8px 0; }
.empty, .notice { padding: 10px 12px; background: #fffbeb; border: 1px solid #fde68a; border-radius: 6px; }
.empty { background: var(--card); border-color: var(--line); color: var(--muted); }
.message { max-width: 640px; margin: 60px auto; background: var(--card); padding: 24px 28px;
           border: 1px solid var(--line); border-radius: 10px; }
.message form { display: flex; flex-direction: column; gap: 10px; margin-top: 14px; }
.message label { display: flex; flex-direction: column; gap: 4px; }
.policy-card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 10px 14px;
               margin-bottom: 12px; }
.card-head { display: flex; align-items: baseline; gap: 10px; }
.card-head h2 { margin: 0; }
.card-head .links { margin-left: auto; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 18px; list-style: none; padding: 0; margin: 6px 0; }
.charts { display: flex; gap: 14px; }
.charts figure { margin: 0; flex: 1 1 0; min-width: 0; }
.charts svg { width: 100%; height: auto; display: block; }
.policy-card.quiet { padding: 8px 14px; }
.policy-card.quiet .facts { display: none; }
.charts figcaption { display: none; }
svg text { font-size: 10px; fill: #475569; }
svg .grid { stroke: #e2e8f0; stroke-dasharray: 3 3; }
svg rect.bar:hover, svg circle.dot:hover { opacity: .75; }
.summary { display: grid; grid-template-columns: repeat(8, auto); gap: 4px 18px; margin: 8px 0; padding: 8px 12px;
           background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.summary dt { font-size: 11px; color: var(--muted); } .summary dd { margin: 0; }
.error-line { color: #b91c1c; }
.detail-grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.1fr); gap: 18px; }
.turn { margin-bottom: 8px; }
.turn .role { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
pre.text, pre.policy-text, pre.command { white-space: pre-wrap; word-break: break-word; margin: 2px 0 0;
                                         padding: 8px 10px; background: var(--card); border: 1px solid var(--line);
                                         border-radius: 6px; max-height: 320px; overflow: auto; }
.turn.judged pre { border-left: 3px solid var(--accent); }
.turn.reply pre { border-left: 3px solid #059669; }
.judged { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 10px 12px;
          margin-bottom: 12px; }
.judged:target { border-color: var(--accent); box-shadow: 0 0 0 2px #bfdbfe; }
.judged-head { display: flex; justify-content: space-between; align-items: baseline; margin-bottom: 4px; }
.version { margin: 4px 0; }
.version summary { cursor: pointer; color: var(--accent); }
table.checks { margin: 4px 0; }
tr.why td { border-bottom: 1px solid var(--line); padding-top: 0; }
.r-violation { color: #b91c1c; } .r-error { color: #7c3aed; }
details.reasoning summary { cursor: pointer; color: var(--muted); font-size: 12px; }
details.reasoning pre { max-height: 180px; }
.rationale { margin: 2px 0; font-style: italic; }
.review { border-top: 1px dashed var(--line); margin-top: 8px; padding-top: 8px; }
.current-mark { margin: 0 0 6px; }
.mark-form { display: grid; grid-template-columns: 1fr 1fr; gap: 6px 14px; align-items: start; }
.mark-form label { display: flex; flex-direction: column; gap: 2px; font-size: 12px; }
.mark-form label.radio { flex-direction: row; align-items: center; gap: 6px; flex-wrap: wrap; }
.mark-form textarea { resize: vertical; }
.mark-form button { justify-self: start; align-self: end; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 12px; }
table.flips { width: auto; margin-top: 6px; }
.export-count { display: flex; align-items: center; gap: 14px; }
table.history td.mark-cell { white-space: nowrap; }
table.shadow tr.why td { padding-top: 0; }
td.clip { max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
.back { margin: 0 0 6px; }
.side-candidate { color: #047857; } .side-enforced { color: #b91c1c; } .side-neither { color: var(--muted); }
"""

JS = """
(function () {
  "use strict";
  var KEY = "guardrail-console-reviewer";
  function saved() { try { return window.localStorage.getItem(KEY) || ""; } catch (e) { return ""; } }
  function save(name) { try { window.localStorage.setItem(KEY, name); } catch (e) { /* private mode */ } }
  var name = saved();
  document.querySelectorAll("form.mark-form").forEach(function (form) {
    var reviewer = form.querySelector("input.reviewer");
    if (reviewer && !reviewer.value && name) { reviewer.value = name; }
    form.addEventListener("submit", function () {
      if (reviewer && reviewer.value.trim()) { save(reviewer.value.trim()); }
    });
    var label = form.querySelector("[name=label]");
    var wrong = form.querySelector("input[name=verdict][value=wrong]");
    if (label && wrong) {
      label.addEventListener("change", function () { if (label.value) { wrong.checked = true; } });
      label.addEventListener("focus", function () { wrong.checked = true; });
    }
  });
})();
"""
