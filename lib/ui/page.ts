import { chartAssets } from './assets';

/**
 * The chart page (GET /): one self-contained HTML document that charts a metric's aggregates through
 * the API itself (GET /api/metrics, POST /api/metric-aggregates) with uPlot. Everything is inline, so
 * it works offline and from Lambda; a per-response nonce lets the Content-Security-Policy allow these
 * scripts and styles and nothing else, and the page may only talk to its own origin.
 *
 * The API key never reaches the server in a URL: `npm start` prints the page's address with the key in
 * the fragment (#key=...), which browsers do not send; the page moves it to sessionStorage and removes
 * it from the address bar. scripts/chart.ts drives the same page to write PNGs, through
 * `window.klaviyoChart.show(...)` for figures that do not come from the API.
 */
export function chartPageSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function chartPage(nonce: string): string {
  const { script, styles } = chartAssets();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Klaviyo analytics: metric aggregates</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${styles}</style>
<style nonce="${nonce}">${PAGE_STYLES}</style>
</head>
<body data-state="idle">
<header>
  <h1>Metric aggregates</h1>
  <p class="sub">Klaviyo-compatible <code>POST /api/metric-aggregates</code>, charted from this API.</p>
</header>
<form id="controls" autocomplete="off">
  <label class="key">API key <input id="key" type="password" placeholder="read or admin key" spellcheck="false" autocomplete="off"></label>
  <button id="connect" type="button">Connect</button>
  <label>Metric <select id="metric" disabled></select></label>
  <fieldset id="measurements">
    <legend>Measurements</legend>
    <label><input type="checkbox" name="measurement" value="count" checked> count</label>
    <label><input type="checkbox" name="measurement" value="sum_value"> sum_value</label>
    <label><input type="checkbox" name="measurement" value="unique"> unique</label>
  </fieldset>
  <label>Interval <select id="interval">
    <option value="hour">hour</option><option value="day" selected>day</option>
    <option value="week">week</option><option value="month">month</option>
  </select></label>
  <label>Time zone <input id="timezone" list="zones" value="UTC" spellcheck="false"></label>
  <datalist id="zones">
    <option value="UTC"><option value="America/New_York"><option value="America/Chicago">
    <option value="America/Los_Angeles"><option value="Europe/London"><option value="Europe/Berlin">
    <option value="Asia/Kolkata"><option value="Asia/Tokyo"><option value="Australia/Sydney">
  </datalist>
  <label>From <input id="from" type="date"></label>
  <label>To (exclusive) <input id="to" type="date"></label>
  <button id="draw" type="submit" disabled>Chart</button>
</form>
<p id="status" role="status">Enter an API key with the read scope, then Connect.</p>
<section id="figure">
  <div id="summary" aria-live="polite"></div>
  <div id="chart"></div>
</section>
<details id="details"><summary>Data</summary><table id="table"></table></details>
<script nonce="${nonce}">${script}</script>
<script nonce="${nonce}">${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

const PAGE_STYLES = `
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --line: #d9dee7; --accent: #2453d4; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 20px 24px 40px; font: 14px/1.45 system-ui, sans-serif; color: var(--ink); background: #fff; }
h1 { font-size: 20px; margin: 0; }
.sub { margin: 2px 0 14px; color: var(--muted); }
form { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: end; padding: 12px; border: 1px solid var(--line); border-radius: 8px; }
label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); }
fieldset { display: flex; gap: 10px; border: 0; padding: 0; margin: 0; }
fieldset legend { font-size: 12px; color: var(--muted); padding: 0; margin-bottom: 3px; }
fieldset label { flex-direction: row; align-items: center; gap: 4px; color: var(--ink); font-size: 13px; }
input, select, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; color: var(--ink); background: #fff; }
.key input { width: 190px; }
#metric { min-width: 220px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
#status { min-height: 1.4em; color: var(--muted); }
#status.error { color: #b3261e; }
#summary { display: flex; gap: 24px; flex-wrap: wrap; margin: 6px 0 10px; }
#summary div { font-size: 12px; color: var(--muted); }
#summary b { display: block; font-size: 20px; color: var(--ink); font-variant-numeric: tabular-nums; }
#figure { padding: 4px 12px; background: #fff; }
#chart { min-height: 380px; }
table { border-collapse: collapse; margin-top: 8px; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 10px; text-align: right; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; }
body.static form, body.static #details, body.static .sub { display: none; }
`;

// Browser code, kept to what every current browser runs without a build step.
const PAGE_SCRIPT = String.raw`
(function () {
  'use strict';
  var KEY_STORAGE = 'klaviyo-analytics-api-key';
  var COLORS = ['#2453d4', '#d4572a', '#1c9a6c', '#8a3ffc', '#b28600', '#e0467c'];
  var $ = function (id) { return document.getElementById(id); };
  var chart = null;
  var metrics = [];

  function setState(state, message, isError) {
    document.body.dataset.state = state;
    if (message !== undefined) {
      $('status').textContent = message;
      $('status').className = isError ? 'error' : '';
    }
  }

  function keyFromFragment() {
    var match = /(?:^#|&)key=([^&]+)/.exec(location.hash);
    if (!match) return null;
    history.replaceState(null, '', location.pathname + location.search);
    return decodeURIComponent(match[1]);
  }

  function apiUrl(path) { return new URL(path.replace(/^\//, ''), location.href).toString(); }

  function errorText(status, doc) {
    var first = doc && doc.errors && doc.errors[0];
    if (!first) return 'HTTP ' + status;
    return first.status + ' ' + first.title + ': ' + first.detail;
  }

  function api(path, body) {
    var headers = { Authorization: 'Bearer ' + $('key').value.trim(), Accept: 'application/vnd.api+json' };
    if (body !== undefined) headers['Content-Type'] = 'application/vnd.api+json';
    return fetch(apiUrl(path), { method: body === undefined ? 'GET' : 'POST', headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        return res.text().then(function (text) {
          var doc = null;
          try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = null; }
          if (!res.ok) throw new Error(errorText(res.status, doc));
          return doc;
        });
      });
  }

  function attr(resource, names) {
    var a = (resource && resource.attributes) || {};
    for (var i = 0; i < names.length; i++) if (a[names[i]] !== undefined && a[names[i]] !== null) return a[names[i]];
    return undefined;
  }
  var eventCountOf = function (m) { var n = Number(attr(m, ['event_count', 'events', 'count'])); return isFinite(n) ? n : 0; };
  var lastEventOf = function (m) { return attr(m, ['last_event_at', 'last_event', 'last_event_datetime', 'last_event_date']); };

  function loadMetrics() {
    var collected = [];
    function page(path, left) {
      return api(path).then(function (doc) {
        collected = collected.concat((doc && doc.data) || []);
        var next = doc && doc.links && doc.links.next;
        return next && left > 1 ? page(next, left - 1) : collected;
      });
    }
    return page('api/metrics', 20);
  }

  function isoDay(date) { return date.toISOString().slice(0, 10); }
  function addDays(day, n) { var d = new Date(day + 'T00:00:00Z'); d.setUTCDate(d.getUTCDate() + n); return isoDay(d); }
  var SPAN_DAYS = { hour: 7, day: 90, week: 364, month: 364 };

  function defaultRange(metric) {
    var last = lastEventOf(metric);
    var end = last ? addDays(isoDay(new Date(last)), 1) : addDays(isoDay(new Date()), 1);
    $('to').value = end;
    $('from').value = addDays(end, -SPAN_DAYS[$('interval').value]);
  }

  function connect() {
    var key = $('key').value.trim();
    if (!key) { setState('idle', 'Enter an API key first.', true); return Promise.resolve(); }
    sessionStorage.setItem(KEY_STORAGE, key);
    setState('loading', 'Loading metrics...');
    return loadMetrics().then(function (list) {
      metrics = list.slice().sort(function (a, b) { return eventCountOf(b) - eventCountOf(a) || String(attr(a, ['name'])).localeCompare(String(attr(b, ['name']))); });
      var select = $('metric');
      select.textContent = '';
      metrics.forEach(function (m) {
        var option = document.createElement('option');
        option.value = m.id;
        var count = eventCountOf(m);
        option.textContent = (attr(m, ['name']) || m.id) + (count ? '  (' + count.toLocaleString('en-US') + ' events)' : '');
        select.appendChild(option);
      });
      select.disabled = metrics.length === 0;
      $('draw').disabled = metrics.length === 0;
      if (metrics.length === 0) { setState('empty', 'No metrics yet: ingest some events first.'); return; }
      defaultRange(metrics[0]);
      return draw();
    }).catch(function (err) { setState('error', err.message, true); });
  }

  function selectedMeasurements() {
    var boxes = document.querySelectorAll('input[name=measurement]:checked');
    return Array.prototype.map.call(boxes, function (b) { return b.value; });
  }

  function draw() {
    var measurements = selectedMeasurements();
    if (measurements.length === 0) { setState('error', 'Choose at least one measurement.', true); return Promise.resolve(); }
    var metricId = $('metric').value;
    var tz = $('timezone').value.trim() || 'UTC';
    var body = { data: { type: 'metric-aggregate', attributes: {
      metric_id: metricId, measurements: measurements, interval: $('interval').value, timezone: tz,
      filter: ['greater-or-equal(datetime,' + $('from').value + 'T00:00:00)', 'less-than(datetime,' + $('to').value + 'T00:00:00)'],
    } } };
    setState('loading', 'Querying...');
    var started = performance.now();
    return api('api/metric-aggregates', body).then(function (doc) {
      var attributes = doc.data.attributes;
      var row = attributes.data[0] || { measurements: {} };
      var name = $('metric').selectedOptions[0] ? $('metric').selectedOptions[0].textContent.replace(/\s+\(.*$/, '') : metricId;
      show({
        title: name + ' per ' + $('interval').value + ' (' + tz + ')',
        timezone: tz,
        dates: attributes.dates,
        series: measurements.map(function (m) {
          var values = row.measurements[m] || attributes.dates.map(function () { return 0; });
          return { label: m, values: values, scale: m === 'sum_value' ? 'value' : 'count' };
        }),
      });
      setState('ready', attributes.dates.length + ' buckets in ' + Math.round(performance.now() - started) + ' ms.');
    }).catch(function (err) { setState('error', err.message, true); });
  }

  function format(v) {
    if (v === null || v === undefined) return '';
    return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(Math.round(v * 100) / 100);
  }

  function renderSummary(spec) {
    var box = $('summary');
    box.textContent = '';
    // Totals of buckets mean something (events per day add up); totals of unrelated figures do not.
    if (spec.categories) return;
    spec.series.forEach(function (s) {
      var total = s.values.reduce(function (a, v) { return a + (Number(v) || 0); }, 0);
      var item = document.createElement('div');
      item.dataset.measurement = s.label;
      var value = document.createElement('b');
      value.textContent = format(total);
      item.appendChild(value);
      item.appendChild(document.createTextNode((spec.categories ? '' : 'total ') + s.label));
      box.appendChild(item);
    });
  }

  function renderTable(spec, labels) {
    var table = $('table');
    table.textContent = '';
    var head = table.insertRow();
    [spec.categories ? '' : 'bucket'].concat(spec.series.map(function (s) { return s.label; })).forEach(function (h) {
      var th = document.createElement('th'); th.textContent = h; head.appendChild(th);
    });
    labels.forEach(function (label, i) {
      var tr = table.insertRow();
      tr.insertCell().textContent = label;
      spec.series.forEach(function (s) { tr.insertCell().textContent = format(s.values[i]); });
    });
  }

  // spec: {title, dates?: ISO strings, categories?: labels, timezone?, series: [{label, values, scale?}]}
  function show(spec) {
    var categories = spec.categories || null;
    var xs = categories
      ? categories.map(function (_, i) { return i; })
      : spec.dates.map(function (d) { return Date.parse(d) / 1000; });
    var tz = spec.timezone || 'UTC';
    var scales = {};
    spec.series.forEach(function (s) { scales[s.scale || 'y'] = true; });
    var scaleNames = Object.keys(scales);
    var width = Math.max(480, $('chart').clientWidth || 960);
    var opts = {
      title: spec.title,
      width: width,
      height: 380,
      scales: { x: { time: !categories } },
      series: [{ label: categories ? '' : 'bucket' }].concat(spec.series.map(function (s, i) {
        var color = COLORS[i % COLORS.length];
        return categories
          ? { label: s.label, scale: s.scale || 'y', stroke: color, fill: color + '99', width: 1, paths: uPlot.paths.bars({ size: [0.7 / spec.series.length, 80], align: spec.series.length === 2 ? (i === 0 ? -1 : 1) : 0 }), points: { show: false }, value: function (u, v) { return format(v); } }
          : { label: s.label, scale: s.scale || 'y', stroke: color, width: 2, points: { show: xs.length <= 60 }, value: function (u, v) { return format(v); } };
      })),
      axes: [categories
        ? { values: function (u, splits) { return splits.map(function (i) { return categories[i] === undefined ? '' : categories[i]; }); }, splits: function () { return xs; } }
        : {}].concat(scaleNames.map(function (name, i) {
          return { scale: name, side: i === 0 ? 3 : 1, grid: { show: i === 0 }, size: 70, values: function (u, vals) { return vals.map(format); } };
        })),
    };
    if (!categories) opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); };
    if (categories) {
      opts.scales.x.range = function () { return [-0.5, xs.length - 0.5]; };
      // Bars start at zero, or their heights lie.
      scaleNames.forEach(function (name) {
        opts.scales[name] = { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; } };
      });
    }
    var data = [xs].concat(spec.series.map(function (s) { return s.values.map(Number); }));
    if (chart) chart.destroy();
    $('chart').textContent = '';
    chart = new uPlot(opts, data, $('chart'));
    renderSummary(spec);
    renderTable(spec, categories || spec.dates);
    if (spec.static) document.body.classList.add('static');
    setState('ready');
  }

  window.klaviyoChart = { show: function (spec) { show(Object.assign({ static: true }, spec)); } };

  $('connect').addEventListener('click', function () { connect(); });
  $('controls').addEventListener('submit', function (e) { e.preventDefault(); draw(); });
  $('interval').addEventListener('change', function () {
    var metric = metrics.filter(function (m) { return m.id === $('metric').value; })[0];
    if (metric) { defaultRange(metric); draw(); }
  });
  $('metric').addEventListener('change', function () {
    var metric = metrics.filter(function (m) { return m.id === $('metric').value; })[0];
    if (metric) { defaultRange(metric); draw(); }
  });
  try { $('timezone').value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (e) { /* keep UTC */ }
  var key = keyFromFragment() || sessionStorage.getItem(KEY_STORAGE);
  if (key) { $('key').value = key; connect(); }
})();
`;
