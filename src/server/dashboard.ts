/**
 * The feed server's dashboard: one self-contained page (no external assets, no build step) that
 * reads `GET /v1/feeds` every 2 seconds. Behind `authorize`, open it as `/#token=<bearer token>`:
 * the fragment never leaves the browser, and the page sends it as `Authorization: Bearer`.
 * Replicas, lag and drift join the page when the server learns about replicas.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidemark</title>
<style>
  :root { color-scheme: light dark; --muted: #777; --line: #8884; --bad: #c0392b; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  p.status { color: var(--muted); margin: 0 0 1rem; }
  p.status.bad { color: var(--bad); }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { padding: .35rem .8rem; border-bottom: 1px solid var(--line); text-align: left; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  th { font-weight: 600; }
  code { font-size: .92em; }
  .lag { color: var(--muted); }
</style>
</head>
<body>
<h1>tidemark feed server</h1>
<p class="status" id="status">loading…</p>
<table>
  <thead><tr><th>feed</th><th>head</th><th>min seq</th><th>keys</th><th>digest seq</th><th>epoch</th><th>tracked table</th></tr></thead>
  <tbody id="feeds"></tbody>
</table>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const statusLine = document.getElementById("status");
const body = document.getElementById("feeds");

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function render(feeds) {
  body.replaceChildren();
  for (const f of feeds) {
    const row = document.createElement("tr");
    const name = document.createElement("code");
    name.textContent = f.name;
    cell(row, "").appendChild(name);
    cell(row, f.head.toLocaleString(), "num");
    cell(row, f.minSeq.toLocaleString(), "num");
    cell(row, f.keys.toLocaleString(), "num");
    const d = cell(row, f.digestSeq.toLocaleString(), "num");
    if (f.digestSeq < f.head) {
      const lag = document.createElement("span");
      lag.className = "lag";
      lag.textContent = " (" + (f.head - f.digestSeq).toLocaleString() + " behind)";
      d.appendChild(lag);
    }
    cell(row, f.epoch);
    cell(row, f.tracked ? f.tracked.table + " (key " + f.tracked.keyColumn + ")" + (f.tracked.active ? "" : ", untracked") : "—");
    body.appendChild(row);
  }
  if (feeds.length === 0) {
    const row = document.createElement("tr");
    const td = cell(row, "no feeds yet: write one with \`tidemark write\` or track a table with \`tidemark track\`");
    td.colSpan = 7;
    body.appendChild(row);
  }
}

async function refresh() {
  try {
    const response = await fetch("/v1/feeds", { headers: token ? { authorization: "Bearer " + token } : {} });
    const json = await response.json();
    if (!response.ok) throw new Error(json.message || json.error || response.statusText);
    render(json);
    statusLine.className = "status";
    statusLine.textContent = json.length + " feed" + (json.length === 1 ? "" : "s") + " · updated " + new Date().toLocaleTimeString();
  } catch (error) {
    statusLine.className = "status bad";
    statusLine.textContent = "cannot read /v1/feeds: " + error.message + (token ? "" : " (behind a token? open this page as /#token=…)");
  }
}

refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`
