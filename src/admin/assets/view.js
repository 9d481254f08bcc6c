// scimguard's live view and report. Every value from an exchange reaches the page as
// text (textContent, createTextNode, attribute values): never as markup.
(function () {
  'use strict';

  var mode = document.body.getAttribute('data-mode');
  var byId = new Map();
  var selectedId = null;
  var renderPending = false;
  var seen = { operation: new Set(), rule: new Set(), tenant: new Set() };
  var SVG = 'http://www.w3.org/2000/svg';
  var VERDICTS = ['forwarded', 'rewritten', 'rejected', 'throttled', 'error'];
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

  function $(id) { return document.getElementById(id); }

  // An element with properties and children; strings become text nodes.
  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        if (key === 'class') node.className = props[key];
        else if (key.indexOf('data-') === 0) node.setAttribute(key, props[key]);
        else node[key] = props[key];
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function text(value) { return value === null || value === undefined ? '' : String(value); }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
  }

  function verdictSpan(verdict) {
    return el('span', { 'class': 'verdict verdict-' + text(verdict) }, text(verdict));
  }

  function ruleSpans(rules) {
    var cell = el('span', { 'class': 'rules' });
    (rules || []).forEach(function (rule) { cell.append(el('span', { 'class': 'rule' }, rule)); });
    return cell;
  }

  function addOption(kind, value) {
    if (!value || seen[kind].has(value)) return;
    seen[kind].add(value);
    var select = $('filter-' + kind);
    var options = Array.prototype.slice.call(select.options, 1).map(function (o) { return o.value; });
    options.push(value);
    options.sort();
    var at = options.indexOf(value);
    var option = el('option', { value: value }, value);
    select.insertBefore(option, select.options[at + 1] || null);
  }

  // Adds an entry; false when it was known already (a reconnect replays the ring).
  function add(entry) {
    if (!entry || !entry.id || byId.has(entry.id)) return false;
    byId.set(entry.id, entry);
    addOption('operation', entry.operation);
    addOption('tenant', entry.tenant);
    (entry.rules || []).forEach(function (rule) { addOption('rule', rule); });
    return true;
  }

  function haystack(entry) {
    var parts = [entry.id, entry.summary, entry.operation, entry.tenant, entry.verdict, entry.status,
      entry.subject && entry.subject.name, entry.subject && entry.subject.id, entry.request && entry.request.target,
      entry.error, entry.upstream && entry.upstream.detail].concat(entry.rules || []);
    (entry.findings || []).forEach(function (f) { parts.push(f.message, f.location); });
    return parts.map(text).join(' ').toLowerCase();
  }

  function matches(entry) {
    var verdict = $('filter-verdict').value;
    var operation = $('filter-operation').value;
    var rule = $('filter-rule').value;
    var tenant = $('filter-tenant').value;
    var words = $('filter-text').value.trim().toLowerCase();
    if (verdict && entry.verdict !== verdict) return false;
    if (operation && entry.operation !== operation) return false;
    if (rule && (entry.rules || []).indexOf(rule) < 0) return false;
    if (tenant && entry.tenant !== tenant) return false;
    if (words) {
      var hay = haystack(entry);
      return words.split(/\s+/).every(function (w) { return hay.indexOf(w) >= 0; });
    }
    return true;
  }

  function newestFirst() {
    return Array.from(byId.values()).sort(function (a, b) {
      if (a.time !== b.time) return a.time < b.time ? 1 : -1;
      return b.seq - a.seq;
    });
  }

  function row(entry) {
    var tr = el('tr', { 'class': 'row', 'data-id': entry.id, 'data-verdict': text(entry.verdict) },
      el('td', { title: text(entry.time) }, text(entry.time).slice(11, 23)),
      el('td', null, text(entry.tenant)),
      el('td', null, text(entry.operation)),
      el('td', { 'class': 'subject' }, entry.subject ? entry.subject.name : ''),
      el('td', null, verdictSpan(entry.verdict)),
      el('td', { 'class': 'status' }, text(entry.status)),
      el('td', null, ruleSpans(entry.rules)),
      el('td', { 'class': 'summary' }, text(entry.summary)));
    if (entry.id === selectedId) tr.classList.add('selected');
    tr.addEventListener('click', function () { select(entry.id); });
    return tr;
  }

  function render() {
    renderPending = false;
    var body = $('list').tBodies[0];
    var all = newestFirst();
    var shown = all.filter(matches);
    body.replaceChildren.apply(body, shown.map(row));
    $('shown').textContent = shown.length + ' of ' + all.length + ' shown';
  }

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    setTimeout(render, 50);
  }

  function section(title) {
    var args = Array.prototype.slice.call(arguments, 1);
    return el.apply(null, ['section', null, el('h3', null, title)].concat(args));
  }

  function pre(value, cls) { return el('pre', cls ? { 'class': cls } : null, text(value)); }

  function headerText(headers) {
    return (headers || []).map(function (h) { return h[0] + ': ' + h[1]; }).join('\n');
  }

  function requestBlock(request) {
    return el('div', null,
      el('p', null, el('code', null, request.method + ' ' + request.target)),
      pre(headerText(request.headers), 'headers'),
      request.body ? pre(request.body, 'body') : null);
  }

  function finding(f) {
    var action = text(f.action);
    var block = el('div', { 'class': 'finding action-' + action.replace(/^would /, '') },
      el('p', null, el('span', { 'class': 'rule' }, text(f.rule)), ' ', el('b', null, action),
        f.location ? ' at ' : '', f.location ? el('code', null, text(f.location)) : null),
      el('p', { 'class': 'message' }, text(f.message)),
      f.source ? el('p', { 'class': 'muted' }, 'source: ' + text(f.source)) : null);
    if (f.fix) block.append(el('p', null, 'fix: ', el('code', null, text(f.fix.before)), ' → ', el('code', null, text(f.fix.after))));
    return block;
  }

  function copy(value, button) {
    function done(ok) { button.textContent = ok ? 'copied' : 'select the text below to copy'; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(function () { done(true); }, function () { done(false); });
    } else {
      var area = el('textarea', { value: value });
      document.body.append(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      area.remove();
      done(ok);
    }
  }

  function select(id) {
    selectedId = id;
    var entry = byId.get(id);
    var pane = $('detail');
    if (!entry) { pane.hidden = true; return; }
    Array.prototype.forEach.call($('list').tBodies[0].rows, function (tr) {
      tr.classList.toggle('selected', tr.getAttribute('data-id') === id);
    });
    var close = el('button', { type: 'button', id: 'detail-close' }, 'close');
    close.addEventListener('click', function () { selectedId = null; pane.hidden = true; render(); });
    var copyButton = el('button', { type: 'button', id: 'copy-curl' }, 'copy as curl');
    copyButton.addEventListener('click', function () { copy(entry.curl, copyButton); });
    var meta = el('table', { 'class': 'meta' });
    [['id', entry.id], ['time', entry.time], ['replica', entry.replica], ['tenant', entry.tenant], ['operation', entry.operation],
      ['mode', entry.mode], ['status', entry.status], ['throttle', entry.throttle], ['fault', entry.blame],
      ['subject', entry.subject ? entry.subject.kind + ' ' + entry.subject.name + (entry.subject.id ? ' (' + entry.subject.id + ')' : '') : null]
    ].forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined) return;
      meta.append(el('tr', null, el('th', null, pair[0]), el('td', null, text(pair[1]))));
    });
    meta.append(el('tr', null, el('th', null, 'verdict'), el('td', null, verdictSpan(entry.verdict))));
    var parts = [
      el('p', null, close, ' ', copyButton),
      el('h2', { id: 'detail-summary' }, text(entry.summary)),
      meta
    ];
    if (entry.error) parts.push(section('Error', el('p', null, text(entry.error))));
    if ((entry.findings || []).length) parts.push(section('Findings', el('div', { id: 'detail-findings' }, ...entry.findings.map(finding))));
    if ((entry.hints || []).length) parts.push(section('Hints', el('ul', null, ...entry.hints.map(function (h) { return el('li', null, text(h)); }))));
    if (entry.upstream) {
      var u = entry.upstream;
      parts.push(section('AWS answered', el('table', null,
        el('tr', null, el('th', null, 'status'), el('td', null, text(u.status))),
        u.detail ? el('tr', null, el('th', null, 'detail'), el('td', null, text(u.detail))) : null,
        u.request_id ? el('tr', null, el('th', null, 'request id'), el('td', null, el('code', null, text(u.request_id)))) : null)));
    }
    var t = entry.timings || {};
    parts.push(section('Timings', el('p', null,
      'total ' + ms(t.total_us) + (t.upstream_us !== null && t.upstream_us !== undefined ? ', upstream ' + ms(t.upstream_us) : '') +
      (t.throttle_us !== null && t.throttle_us !== undefined ? ', throttle wait ' + ms(t.throttle_us) : ''))));
    if ((entry.diff || []).length) {
      var diff = el('pre', { 'class': 'diff', id: 'detail-diff' });
      entry.diff.forEach(function (line) {
        var cls = line.op === '+' ? 'add' : line.op === '-' ? 'del' : 'same';
        diff.append(el('span', { 'class': cls }, (line.op === '=' ? '  ' : line.op + ' ') + line.text));
      });
      parts.push(section('Received → forwarded (the rewrite)', diff));
    }
    parts.push(section('Request as received', requestBlock(entry.request)));
    (entry.forwarded || []).forEach(function (request, i) {
      parts.push(section(i === 0 ? 'Sent upstream instead' : 'Then sent (batch ' + (i + 1) + ')', requestBlock(request)));
    });
    if (entry.response) {
      parts.push(section('Response ' + entry.response.status, pre(headerText(entry.response.headers), 'headers'),
        entry.response.body ? pre(entry.response.body, 'body') : null));
    }
    parts.push(section('As curl (token as $SCIM_TOKEN)', pre(entry.curl, 'curl')));
    pane.replaceChildren.apply(pane, parts);
    pane.hidden = false;
  }

  function ms(us) {
    if (us === null || us === undefined) return '-';
    return (us / 1000).toFixed(1) + ' ms';
  }

  function counter(label, value, id) {
    return el('div', { 'class': 'counter', id: id || '' }, el('b', null, text(value)), label);
  }

  function showStats(stats) {
    var c = stats.counts;
    var minutes = Math.round(stats.window_s / 60);
    $('counters').replaceChildren(
      counter('requests', c.requests, 'count-requests'),
      counter('rejected', c.rejected, 'count-rejected'),
      counter('rewritten', c.rewritten, 'count-rewritten'),
      counter('429s', c.too_many_requests, 'count-429'),
      counter('upstream errors', c.upstream_errors, 'count-upstream-errors'),
      el('div', { 'class': 'counter muted' }, 'in the last ' + minutes + ' min; ' + stats.held + ' of ' + stats.capacity + ' kept'));
    var table = $('tenants');
    table.hidden = stats.tenants.length === 0;
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], stats.tenants.map(function (t) {
      return el('tr', null, el('td', null, t.tenant || '(none)'), el('td', null, text(t.last)),
        el('td', null, text(t.admitted)), el('td', null, text(t.delayed)), el('td', null, text(t.refused)),
        el('td', null, text(t.upstream_429)), el('td', null, t.max_wait_ms + ' ms'),
        el('td', null, t.back_off_s > 0 ? t.back_off_s + ' s left' : '-'));
    }));
  }

  function wireFilters() {
    ['filter-verdict', 'filter-operation', 'filter-rule', 'filter-tenant'].forEach(function (id) {
      $(id).addEventListener('change', render);
    });
    ['input', 'change', 'search'].forEach(function (event) { $('filter-text').addEventListener(event, render); });
    $('filters').addEventListener('submit', function (e) { e.preventDefault(); });
  }

  function live() {
    $('exchanges-title').textContent = 'Recent exchanges, newest first';
    var status = $('status');
    var source = new EventSource('/events');
    source.addEventListener('open', function () { status.textContent = 'live'; });
    source.addEventListener('error', function () { status.textContent = 'reconnecting…'; });
    source.addEventListener('entry', function (event) {
      var fresh = false;
      try { fresh = add(JSON.parse(event.data)); } catch (e) { return; }
      if (fresh) scheduleRender();
    });
    source.addEventListener('stats', function (event) {
      try { showStats(JSON.parse(event.data)); } catch (e) { /* the next push repairs it */ }
    });
  }

  // A stacked bar chart of `series` (one object of counts per bucket) as inline SVG.
  function chart(buckets, key, names, colour) {
    var width = 640, height = 180, left = 36, bottom = 20;
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + (height + bottom));
    svg.setAttribute('role', 'img');
    var max = 1;
    buckets.forEach(function (b) {
      var sum = names.reduce(function (s, n) { return s + (b[key][n] || 0); }, 0);
      if (sum > max) max = sum;
    });
    var bar = (width - left) / Math.max(buckets.length, 1);
    buckets.forEach(function (b, i) {
      var y = height;
      names.forEach(function (n, j) {
        var count = b[key][n] || 0;
        if (!count) return;
        var h = count / max * (height - 10);
        y -= h;
        var rect = document.createElementNS(SVG, 'rect');
        rect.setAttribute('x', String(left + i * bar + 1));
        rect.setAttribute('y', String(y));
        rect.setAttribute('width', String(Math.max(bar - 2, 1)));
        rect.setAttribute('height', String(h));
        rect.setAttribute('fill', colour(n, j));
        var title = document.createElementNS(SVG, 'title');
        title.textContent = b.start + ': ' + count + ' ' + n;
        rect.append(title);
        svg.append(rect);
      });
    });
    function label(x, y, value, anchor) {
      var t = document.createElementNS(SVG, 'text');
      t.setAttribute('x', String(x)); t.setAttribute('y', String(y));
      t.setAttribute('font-size', '11'); t.setAttribute('fill', 'currentColor');
      if (anchor) t.setAttribute('text-anchor', anchor);
      t.textContent = value;
      svg.append(t);
    }
    label(left - 4, 12, String(max), 'end');
    label(left - 4, height, '0', 'end');
    if (buckets.length) {
      label(left, height + 15, buckets[0].start.slice(0, 16).replace('T', ' '));
      label(width, height + 15, buckets[buckets.length - 1].start.slice(0, 16).replace('T', ' '), 'end');
    }
    var legend = el('div', { 'class': 'legend' });
    names.forEach(function (n, j) {
      var total = buckets.reduce(function (s, b) { return s + (b[key][n] || 0); }, 0);
      var swatch = el('i');
      swatch.style.background = colour(n, j);
      legend.append(el('span', null, swatch, n + ' ' + total));
    });
    return el('div', null, svg, legend);
  }

  function cells(values) {
    return el.apply(null, ['tr', null].concat(values.map(function (v) { return el('td', null, v instanceof Node ? v : text(v)); })));
  }

  function fill(tableId, rows) {
    var body = $(tableId).tBodies[0];
    body.replaceChildren.apply(body, rows.length ? rows : [cells(['none'])]);
  }

  function report(data) {
    var summary = data.summary;
    $('summary').hidden = false;
    $('live').hidden = true;
    $('status').textContent = 'report made ' + text(summary.made);
    $('exchanges-title').textContent = 'Every exchange, newest first';
    var warnings = summary.sources.warnings;
    $('sources').textContent = 'Captures: ' + summary.sources.files.join(', ') +
      (summary.first ? ' — from ' + summary.first + ' to ' + summary.last : '') +
      (summary.listed < summary.total ? ' — the list below holds ' + summary.listed + ' of them: every failed one, then the newest' : '') +
      (warnings.length ? ' — ' + warnings.length + ' line(s) left out: ' + warnings.join('; ') : '');
    var totals = [counter('exchanges', summary.total, 'total-exchanges')];
    VERDICTS.forEach(function (v) { totals.push(counter(v, summary.by_verdict[v] || 0, 'total-' + v)); });
    $('totals').replaceChildren.apply($('totals'), totals);
    $('chart-verdict').replaceChildren(chart(summary.timeline, 'by_verdict', VERDICTS, function (n) { return cssVar('--' + n); }));
    var operations = Object.keys(summary.by_operation).sort(function (a, b) { return summary.by_operation[b] - summary.by_operation[a]; });
    $('chart-operation').replaceChildren(chart(summary.timeline, 'by_operation', operations, function (n, j) { return PALETTE[j % PALETTE.length]; }));
    fill('by-operation', operations.map(function (op) { return cells([op, summary.by_operation[op]]); }));
    fill('top-rules', summary.top_rules.map(function (r) { return cells([el('span', { 'class': 'rule' }, r.rule), r.count, r.message]); }));
    fill('aws-errors', summary.aws_errors.map(function (e) {
      return cells([e.status, e.detail || '(no detail)', e.count, e.operations.join(', '), e.request_ids.join(', ')]);
    }));
    fill('failed', summary.failed.map(function (f) {
      var why = el('ul', null, ...f.why.map(function (w) { return el('li', null, w); }));
      var fix = el('ul', null, ...f.fix.map(function (w) { return el('li', null, w); }));
      return cells([f.kind + ' ' + f.name, f.operations.join(', '), f.count, why, fix]);
    }));
    data.entries.forEach(add);
    render();
  }

  // The guard's state, read every few seconds; a tripped tenant gets a release button
  // that asks once more before it posts (POST /guard/{tenant}/release).
  var GUARD_INTERVAL = 3000;

  function guardRow(tenant, state) {
    var trip = state.trip;
    var latest = trip && trip.operations.length ? trip.operations[trip.operations.length - 1] : null;
    var action = null;
    if (state.tripped) {
      action = el('button', { type: 'button', 'class': 'release', 'data-tenant': tenant }, 'release…');
      action.addEventListener('click', function () {
        if (action.getAttribute('data-armed') !== 'yes') {
          action.setAttribute('data-armed', 'yes');
          action.textContent = 'confirm: let the held changes through';
          return;
        }
        action.disabled = true;
        fetch('/guard/' + encodeURIComponent(tenant) + '/release', { method: 'POST', credentials: 'same-origin' })
          .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); })
          .then(function (answer) {
            $('guard-result').textContent = answer[0]
              ? 'released ' + tenant + ': ' + answer[1].held + ' held request(s) may go through on the IdP\'s retry'
              : 'release of ' + tenant + ' failed: ' + text(answer[1].error);
            pollGuard(false);
          }, function () { $('guard-result').textContent = 'release of ' + tenant + ' failed: no answer'; });
      });
    }
    return el('tr', { 'data-tenant': tenant, 'data-tripped': state.tripped ? 'yes' : 'no' },
      el('td', null, tenant),
      el('td', null, state.tripped ? el('span', { 'class': 'verdict verdict-rejected' }, 'tripped') : 'counting'),
      el('td', null, text(state.changes_in_window)),
      el('td', null, trip ? text(trip.held) : ''),
      el('td', null, latest ? latest.operation + ' ' + latest.target : ''),
      el('td', null, action));
  }

  function showGuard(status) {
    var tenants = Object.keys(status.tenants).sort();
    $('guard').hidden = false;
    $('guard-summary').textContent = 'Limit: ' + status.limit + ' destructive changes per ' + status.window_seconds + ' s per tenant' +
      (status.observe ? ' (observe mode: warns only)' : '') + '.';
    var body = $('guard-tenants').tBodies[0];
    // A row whose button is armed is kept as it is until clicked again.
    var armed = body.querySelector('button[data-armed="yes"]:not([disabled])');
    if (armed) return;
    body.replaceChildren.apply(body, tenants.length
      ? tenants.map(function (t) { return guardRow(t, status.tenants[t]); })
      : [cells(['no destructive change seen yet'])]);
  }

  function pollGuard(again) {
    fetch('/guard', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 404) return null; // the guard is off
        return r.ok ? r.json() : undefined;
      })
      .then(function (status) {
        if (status === null) { $('guard').hidden = true; return; }
        if (status) showGuard(status);
        if (again) setTimeout(function () { pollGuard(true); }, GUARD_INTERVAL);
      }, function () { if (again) setTimeout(function () { pollGuard(true); }, GUARD_INTERVAL); });
  }

  wireFilters();
  if (mode === 'live') {
    live();
    pollGuard(true);
  } else {
    var holder = $('report-data');
    report(JSON.parse(holder.textContent));
  }
})();
