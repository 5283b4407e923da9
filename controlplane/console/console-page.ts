/**
 * The console's page: a frame that console.js fills in. No inline script or
 * style (the Content-Security-Policy allows neither), nothing from elsewhere.
 */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>polymur control plane</title>
<link rel="icon" href="/console/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/console.css">
<script src="/console/console.js" defer></script>
</head>
<body>
<header>
  <h1>polymur control plane</h1>
  <span id="summary" class="summary">not connected</span>
  <form id="login" autocomplete="off">
    <label for="token">admin token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" placeholder="POLYMUR_ADMIN_TOKEN">
    <button id="use-token" type="submit">Use token</button>
    <button id="forget-token" type="button">Forget token</button>
  </form>
</header>
<div id="refusal" class="refusal" role="alert" hidden></div>
<div id="trouble" class="trouble" role="status" hidden></div>
<main id="main" hidden>
  <section id="nodes">
    <h2>Nodes</h2>
    <p class="note">Rates are per second, derived here from the counters nodes report (every 5 s), over the last 10 s or more (the first after some 10 s); graphs show the last 5 minutes.</p>
    <div id="nodes-body"></div>
  </section>
  <section id="config">
    <h2>Destinations, routing and rules</h2>
    <div id="config-body"></div>
  </section>
  <section id="keys">
    <h2>API keys</h2>
    <div id="keys-body"></div>
  </section>
  <section id="history">
    <h2>History</h2>
    <div id="history-body"></div>
  </section>
</main>
<footer>The admin token is kept in this tab only (sessionStorage) and sent to this control plane alone, as polymurctl sends it.</footer>
</body>
</html>
`;
