/** The console's style sheet (served as /console/console.css). */
export const CONSOLE_STYLE = `
:root {
  --fg: #1d2329; --muted: #5f6b76; --line: #d8dee4; --bg: #f6f8fa; --card: #fff;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --in: #0969da; --out: #8250df; --queue: #bc4c00;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg);
}
body { margin: 0; }
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1.5rem;
  padding: 0.6rem 1.2rem; background: #24292f; color: #fff;
}
header h1 { font-size: 1.1rem; margin: 0; font-weight: 600; }
.summary { color: #d0d7de; flex: 1; }
#login { display: flex; gap: 0.4rem; align-items: center; }
#login label { color: #d0d7de; }
#login input { width: 16rem; padding: 0.2rem 0.4rem; }
main { padding: 0.5rem 1.2rem 2rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; margin: 1rem 0; padding: 0.2rem 1rem 1rem; }
h2 { font-size: 1.05rem; margin: 0.8rem 0 0.4rem; }
h3 { font-size: 0.95rem; margin: 1rem 0 0.3rem; }
.note, .muted, footer { color: var(--muted); font-size: 0.85rem; }
footer { padding: 0 1.2rem 1rem; }
table { border-collapse: collapse; width: 100%; margin: 0.3rem 0; }
th, td { text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 0.8rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.dest td { background: var(--bg); font-size: 0.85rem; }
tr.dest td:first-child { padding-left: 1.6rem; }
tr.reasons td, tr.dest-detail td { white-space: normal; font-size: 0.8rem; padding-top: 0; border-bottom-style: dashed; }
tr.reasons td { padding-left: 1.6rem; }
tr.dest-detail td:first-child { padding-left: 2.4rem; }
.reason code { color: var(--fg); }
.last-error { color: var(--bad); overflow-wrap: anywhere; }
.state { font-weight: 600; }
.state.ok { color: var(--ok); }
.state.warn { color: var(--warn); }
.state.bad { color: var(--bad); }
.refusal { margin: 1rem 1.2rem; padding: 0.8rem 1rem; border: 1px solid var(--bad); border-radius: 6px; background: #ffebe9; color: #82071e; }
.refusal strong { display: block; margin-bottom: 0.2rem; }
.trouble { margin: 1rem 1.2rem; padding: 0.6rem 1rem; border: 1px solid var(--warn); border-radius: 6px; background: #fff8c5; }
svg.spark { display: block; }
svg.spark .in { stroke: var(--in); }
svg.spark .out { stroke: var(--out); }
svg.spark .queue { stroke: var(--queue); }
svg.spark polyline { fill: none; stroke-width: 1.5; }
svg.spark .axis { stroke: var(--line); stroke-width: 1; }
.legend { font-size: 0.75rem; color: var(--muted); }
.legend .in { color: var(--in); } .legend .out { color: var(--out); } .legend .queue { color: var(--queue); }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: 0.5rem; overflow: auto; max-height: 20rem; margin: 0.3rem 0; }
ul.plain { list-style: none; padding: 0; margin: 0.2rem 0; }
ul.plain li { padding: 0.1rem 0; font-family: ui-monospace, monospace; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 1rem; margin: 0.2rem 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
code { font-family: ui-monospace, monospace; }
`;
