// The auditors' dashboard. Auditors read the log (checkpoints and
// consistency); DPOs (their organisations) and regulators (all) also see
// misuse alerts, the break-glass review queue and the event search. The
// API enforces who sees what, and records every read of patients' events.
'use strict';

document.addEventListener('DOMContentLoaded', async () => {
  const s = Vigie.requireSession(['auditor', 'dpo', 'regulator']);
  if (!s) return;
  const { t, el, svg } = Vigie;
  const SEEN = 'vigie.audit.checkpoints';
  const readsEvents = s.role === 'dpo' || s.role === 'regulator';
  const orgs = s.orgs;
  for (const id of ['alerts', 'queue', 'search']) document.getElementById(id).hidden = !readsEvents;
  let keys = null, checkpoint = null; // keys and the latest signed checkpoint, verified

  let checkpointSize = 0; // of the latest checkpoint, as the verifier opened it

  // The log: the server's history of signed checkpoints (sampled over the
  // log's whole life, each with the consistency proof from the one before)
  // and every checkpoint this browser saw, merged by size; each verified
  // and proved consistent with the one before by the verifier
  // (ledger/audit CheckSeries), which also reports a rollback: a
  // checkpoint served now older than the largest this browser verified
  // before (smaller, or as large with another tree).
  async function checkLog() {
    const box = document.getElementById('log-status');
    let seen = [];
    try { seen = JSON.parse(localStorage.getItem(SEEN)) || []; } catch (e) { seen = []; }
    const rep = await Vigie.verify('log', { keys: { pinned: Vigie.pinnedKeys() }, seen, now: new Date().toISOString() });
    if (rep.error) throw new Error(rep.error);
    keyInfo = rep.keys;
    keys = { checkpoint_key: rep.keys.checkpoint_key, receipt_key: rep.keys.receipt_key };
    if (rep.log && rep.log.rollback) return rolledBack(box, rep.log);
    if (rep.ok) {
      Vigie.keepKeys(rep.keys);
      localStorage.setItem(SEEN, JSON.stringify(rep.seen || []));
      checkpoint = rep.latest_note;
      checkpointSize = Number(rep.latest.size);
      Vigie.status(box, 'verified', t('audit.consistent', { n: rep.checkpoints.length }), keyNote());
    } else {
      Vigie.status(box, 'failed', t('audit.inconsistent'), (rep.problems || []).join(' · '));
      box.setAttribute('role', 'alert');
    }
    box.dataset.checkpoints = rep.checkpoints.length;
    box.dataset.signedHistory = rep.signed_history;
    document.getElementById('cp-list').replaceChildren(...rep.checkpoints.map(x =>
      el('li', { text: t(x.signed ? 'audit.cpLineSigned' : 'audit.cpLine', { size: x.size, time: Vigie.fmtTime(x.time), verdict: t('verdict.' + x.verdict) }) })).reverse().slice(0, 20));
    if (rep.checkpoints.length) drawSizes(rep.checkpoints);
  }
  // rolledBack reports a rollback or fork of the log; what this browser
  // saw before stays remembered.
  function rolledBack(box, g) {
    Vigie.status(box, 'failed', t('audit.inconsistent'), Vigie.growthText(g));
    box.setAttribute('role', 'alert');
    Object.assign(box.dataset, { rollback: g.rollback, seen: g.seen, now: g.now });
    document.getElementById('cp-list').replaceChildren();
  }
  let keyInfo = null;
  const keyNote = () => [keyInfo && keyInfo.changed ? t('keys.changed') : '', keyInfo && keyInfo.policy_changed ? t('keys.policyChanged') : ''].filter(Boolean).join(' ');

  function drawSizes(cps) {
    const W = 720, H = 200, left = 50, bottom = 24, top = 10;
    const pts = cps.map(x => ({ t: Date.parse(x.time), size: Number(x.size), ok: x.verdict === 'verified' }));
    const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1), max = Math.max(1, ...pts.map(p => p.size));
    const x = v => left + (W - left - 10) * (v - t0) / (t1 - t0), y = v => H - bottom - (H - bottom - top) * v / max;
    document.getElementById('cp-chart').replaceChildren(svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'cp-chart-title cp-chart-desc' },
      svg('desc', { id: 'cp-chart-desc' }, t('audit.chartSummary', { from: pts[0].size, to: pts[pts.length - 1].size, n: pts.length })),
      svg('line', { class: 'axis', x1: left, y1: H - bottom, x2: W - 5, y2: H - bottom }),
      svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: H - bottom }),
      svg('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' }, String(max)),
      svg('text', { x: left - 6, y: H - bottom, 'text-anchor': 'end' }, '0'),
      svg('polyline', { class: 'line', points: pts.map(p => `${x(p.t)},${y(p.size)}`).join(' ') }),
      pts.map(p => svg('circle', { class: 'dot' + (p.ok ? '' : ' failed'), cx: x(p.t), cy: y(p.size), r: 4 }, svg('title', null, `${p.size} · ${Vigie.fmtTime(new Date(p.t).toISOString())}`)))));
  }

  // searchPages runs an audit search (recorded by the API as a read in
  // each patient's history), page after page from token, at most
  // maxPages, and verifies each event against the checkpoint. next is the
  // token of the page after, if any.
  async function searchPages(filters, maxPages, token) {
    let events = [], pages = 0;
    token = token || '';
    do {
      const page = await Vigie.api('POST', '/v1/audit/events:search', Object.assign({ page_size: 100 }, filters, token ? { page_token: token } : {}));
      events = events.concat(page.events || []);
      token = page.next_page_token || '';
      pages++;
    } while (token && pages < maxPages);
    const size = checkpointSize;
    // One inclusion proof per event, a few at a time: within a DPO's rate.
    events = await Vigie.pool(events, 4, async e => {
      if (Number(e.leaf_index) >= size) return e;
      const p = await Vigie.api('GET', `/v1/log/inclusion?leaf_index=${e.leaf_index}&tree_size=${size}`);
      return Object.assign({}, e, { inclusion_proof: p.hashes });
    });
    const rep = await Vigie.verify('events', { keys, checkpoint, events, now: new Date().toISOString() });
    return { rep, next: token };
  }
  // A DPO searches one of their organisations at a time (the API requires
  // it); the queue goes through each.
  const scopes = () => (s.role === 'dpo' ? orgs.map(o => ({ organization: o })) : [{}]);
  if (s.role === 'dpo') {
    const input = document.getElementById('s-org');
    const select = el('select', { id: 's-org', name: 'organization', 'aria-describedby': 's-org-error' }, orgs.map(o => el('option', { value: o, text: o })));
    input.replaceWith(select);
  }

  // alertText says what an alert's rule measured, in the page's language,
  // from its figures; the server's (English) detail for a kind the page
  // does not know.
  function alertText(a) {
    const key = 'alertText.' + a.kind;
    if (t(key) === key || typeof a.count !== 'number') return a.detail || '';
    const h = a.odd_hours || {};
    return t(key, { count: a.count, patients: a.patients, threshold: a.threshold || '', window: fmtWindow(a.window_seconds),
      from: Vigie.fmtTime(a.start_time), to: Vigie.fmtTime(a.end_time), start: h.start_hour, end: h.end_hour, zone: h.time_zone || '' });
  }
  function fmtWindow(sec) {
    sec = Number(sec) || 0;
    return sec % 3600 === 0 ? (sec / 3600) + ' h' : sec % 60 === 0 ? (sec / 60) + ' min' : sec + ' s';
  }
  // The API's severities, as the page names them.
  const severities = { ALERT_SEVERITY_HIGH: 'critical', ALERT_SEVERITY_MEDIUM: 'warning', ALERT_SEVERITY_LOW: 'info' };
  let alerts = null; // the last answer, shown again in another language
  async function loadAlerts() {
    const body = document.getElementById('alerts-body');
    try {
      alerts = ((await Vigie.api('GET', '/v1/audit/alerts')).alerts || []).map(a => Object.assign({}, a, { severity: severities[a.severity] || 'info' }));
      await VigieEvents.lookup(alerts.map(a => a.actor_rpps), alerts.map(a => a.organization));
      renderAlerts();
    } catch (e) {
      if (e instanceof Vigie.ApiError && e.status === 404) body.replaceChildren(el('p', { text: t('audit.alertsOff') }));
      else if (!(e instanceof Vigie.ApiError && e.status === 401)) body.replaceChildren(el('p', { class: 'field-error', text: t('error.load') + ' ' + e.message }));
    }
  }
  function renderAlerts() {
    const body = document.getElementById('alerts-body');
    if (!alerts) return;
    if (!alerts.length) { body.replaceChildren(el('p', { text: t('audit.alertsNone') })); return; }
    body.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { class: 'responsive', id: 'alerts-table' },
      el('thead', null, el('tr', null, ['audit.alertKind', 'audit.severity', 'field.rpps', 'audit.organization', 'audit.events', 'audit.detail'].map(k => el('th', { scope: 'col', text: t(k) })))),
      el('tbody', null, alerts.map(a => el('tr', { 'data-kind': a.kind, class: a.severity === 'critical' ? 'deny' : a.severity === 'warning' ? 'btg' : null },
        el('td', { 'data-label': t('audit.alertKind'), text: t('alert.' + a.kind) === 'alert.' + a.kind ? a.kind : t('alert.' + a.kind) }),
        el('td', { 'data-label': t('audit.severity') }, el('span', { class: 'badge ' + (a.severity === 'critical' ? 'deny' : 'btg'), text: t('severity.' + a.severity) })),
        el('td', { 'data-label': t('field.rpps'), text: a.actor_rpps ? VigieEvents.whoIs(a.actor_rpps) : '' }),
        el('td', { 'data-label': t('audit.organization'), text: a.organization ? VigieEvents.organisation(a.organization) : '' }),
        el('td', { 'data-label': t('audit.events'), class: 'mono', text: a.events.map(e => '#' + e.leaf_index).join(' ') }),
        el('td', { 'data-label': t('audit.detail'), class: 'detail', text: alertText(a) })))))));
  }
  document.addEventListener('vigie:lang', renderAlerts);

  // The queue: the break-glass accesses (the server's search says which:
  // an emergency purpose of the rules of each decision) that were allowed
  // (a denied attempt gave access to nothing; the misuse rule
  // "unreviewed" counts the same ones) and that no review event names
  // yet, oldest first, up to QUEUE_PAGES pages of each search; beyond,
  // the page says so. Which review decides an access is the verifier's
  // verdict (consent.FinalReview, through VigieEvents.judge).
  const QUEUE_PAGES = 10;
  const emergencyAllowed = e => {
    const d = (e.payload || {}).decision || {};
    return e.kind === 'access' && d.effect === 'ALLOW';
  };
  async function loadQueue() {
    const body = document.getElementById('queue-body');
    let accesses = [], reviews = [], truncated = false;
    for (const scope of scopes()) {
      const a = await searchPages(Object.assign({ kind: 'EVENT_KIND_ACCESS', break_glass_only: true }, scope), QUEUE_PAGES);
      // An event that fails verification stays in view, failed.
      const found = a.rep.events.filter(e => emergencyAllowed(e) || e.verdict === 'failed');
      accesses = accesses.concat(found);
      truncated = truncated || !!a.next;
      if (!found.length) continue;
      // A review comes after the access it names.
      const since = new Date(Math.min(...found.map(e => Date.parse(e.time)).filter(x => !isNaN(x)), Date.now())).toISOString();
      const r = await searchPages(Object.assign({ kind: 'EVENT_KIND_BREAK_GLASS_REVIEW', start_time: since }, scope), QUEUE_PAGES);
      reviews = reviews.concat(r.rep.events);
      truncated = truncated || !!r.next;
    }
    await VigieEvents.loadRules(accesses);
    const final = await VigieEvents.judge([], reviews);
    const seen = new Set();
    const pending = accesses.filter(e => !final[e.commitment] && !seen.has(e.commitment) && seen.add(e.commitment))
      .sort((a, b) => Number(a.leaf_index) - Number(b.leaf_index));
    const note = truncated ? el('p', { id: 'queue-more', class: 'small', text: t('audit.queueMore', { pages: QUEUE_PAGES, n: pending.length }) }) : null;
    body.dataset.pending = pending.length;
    if (!pending.length) { body.replaceChildren(el('p', { id: 'queue-empty', text: t('audit.queueEmpty') }), note || ''); return; }
    body.replaceChildren(...[note].concat(pending.map(e => reviewCard(VigieEvents.describe(e)))).filter(Boolean));
  }
  function reviewCard(v) {
    const id = 'r' + v.commitment.slice(0, 12);
    const err = el('p', { class: 'field-error', id: id + '-error', hidden: true });
    const radios = ['justified', 'unjustified'].map(k => el('label', { class: 'check' },
      el('input', { type: 'radio', name: 'verdict', value: k, id: id + '-' + k }), t({ justified: 'audit.justified', unjustified: 'audit.unjustified' }[k])));
    const comment = el('textarea', { id: id + '-comment', name: 'comment', maxlength: '2000' });
    const form = el('form', { class: 'panel review', 'data-commitment': v.commitment, novalidate: true },
      el('table', null, el('tbody', null, VigieEvents.row(v))),
      el('fieldset', { 'aria-describedby': id + '-error' }, el('legend', { text: t('audit.verdict') }), radios), err,
      el('label', { for: id + '-comment', text: t('audit.comment') }), comment,
      el('button', { type: 'submit', class: 'primary', text: t('audit.review') }));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      const verdict = form.querySelector('input[name=verdict]:checked');
      Vigie.fieldError(radios[0].firstChild, err, verdict ? '' : t('audit.err.verdict'));
      if (!verdict) { radios[0].firstChild.focus(); return; }
      try {
        const r = await Vigie.api('POST', '/v1/audit/break-glass-reviews', {
          request_id: 'portal-' + crypto.getRandomValues(new Uint32Array(4)).join('-'), event_commitment: v.commitment,
          verdict: verdict.value === 'justified' ? 'BREAK_GLASS_VERDICT_JUSTIFIED' : 'BREAK_GLASS_VERDICT_UNJUSTIFIED', comment: comment.value });
        const box = document.getElementById('queue-status');
        Vigie.status(box, 'verified', t('audit.reviewed', { index: r.event.leaf_index }));
        box.dataset.reviewed = v.commitment;
        form.remove();
      } catch (e) {
        if (e instanceof Vigie.ApiError && e.status !== 401) Vigie.fieldError(comment, err, e.message);
      }
    });
    return form;
  }

  const form = document.getElementById('search-form');
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const f = form.elements, problems = [];
    const check = (input, problem) => { Vigie.fieldError(input, document.getElementById(input.id + '-error'), problem); if (problem) problems.push(input); };
    const ins = f.patient_ins.value.replace(/\s/g, ''), rpps = f.actor_rpps.value.trim(), org = f.organization.value.trim();
    check(f.patient_ins, ins && !/^[0-9]{13}[0-9]{2}$|^[0-9]{5}[0-9AB][0-9]{7}[0-9]{2}$/.test(ins) ? t('field.named', { field: t('audit.ins'), problem: t('field.err.ins') }) : '');
    check(f.actor_rpps, rpps && !/^[0-9]{11}$/.test(rpps) ? t('field.named', { field: t('field.rpps'), problem: t('field.err.rpps') }) : '');
    check(f.organization, org && !/^[0-9A-Za-z]{9}$/.test(org) ? t('field.named', { field: t('audit.organization'), problem: t('field.err.finess') }) : '');
    const from = Vigie.parseDay(f.from.value), to = Vigie.parseDay(f.to.value);
    const bad = key => t('field.named', { field: t(key), problem: t('field.err.date') });
    check(f.from, from === null ? bad('filter.from') : '');
    check(f.to, to === null ? bad('filter.to') : from && to && to <= from ? t('audit.err.dates') : '');
    if (problems.length) { problems[0].focus(); return; }
    const q = {};
    if (ins) q.patient_ins = ins;
    if (rpps) q.actor_rpps = rpps;
    if (org) q.organization = org;
    if (from) q.start_time = from + 'T00:00:00Z';
    if (to) q.end_time = to + 'T00:00:00Z';
    if (f.kind.value) q.kind = f.kind.value;
    if (f.break_glass_only.checked) q.break_glass_only = true;
    found = { q, events: [], ok: true, next: '' };
    document.querySelector('#results tbody').replaceChildren();
    await more();
  });

  // The search's results so far, and the token of the next page: the
  // "more results" button asks for it, with the same filters.
  let found = null;
  const moreBtn = el('button', { type: 'button', class: 'secondary', id: 'search-more', hidden: true, text: t('audit.moreResults') });
  document.getElementById('results').closest('.table-wrap').after(moreBtn);
  moreBtn.addEventListener('click', () => more());
  document.addEventListener('vigie:lang', () => { moreBtn.textContent = t('audit.moreResults'); });
  async function more() {
    const f = form.elements, count = document.getElementById('search-count');
    const check = (input, problem) => Vigie.fieldError(input, document.getElementById(input.id + '-error'), problem);
    moreBtn.hidden = true;
    try {
      const { rep, next } = await searchPages(found.q, 1, found.next);
      await VigieEvents.loadRules(rep.events);
      document.querySelector('#results tbody').append(...rep.events.map(e => VigieEvents.row(VigieEvents.describe(e))));
      found.events = found.events.concat(rep.events);
      found.ok = found.ok && rep.ok;
      found.next = next;
      count.textContent = t('audit.results', { n: found.events.length, ok: found.ok ? t('audit.allOk') : t('audit.notAllOk') }) + (next ? ' ' + t('audit.resultsMore') : '');
      count.dataset.ok = found.ok;
      count.dataset.n = found.events.length;
      moreBtn.hidden = !next;
    } catch (e) {
      if (e instanceof Vigie.ApiError && e.status === 400) {
        const info = Vigie.errorInfo(e, 'INVALID_FIELD');
        const field = info && info.metadata && { patient_ins: f.patient_ins, actor_rpps: f.actor_rpps, organization: f.organization, end_time: f.to }[info.metadata.field];
        if (field) { check(field, e.message); field.focus(); return; }
      }
      if (!(e instanceof Vigie.ApiError && e.status === 401)) count.textContent = t('error.load') + ' ' + VigieText.escape(e.message);
    }
  }

  try {
    await VigieEvents.loadTexts();
    await checkLog();
    if (readsEvents && checkpoint) await Promise.all([loadAlerts(), loadQueue()]);
  } catch (e) {
    if (!(e instanceof Vigie.ApiError && e.status === 401)) Vigie.status(document.getElementById('log-status'), 'error', t('error.load'), e.message);
  }
});
