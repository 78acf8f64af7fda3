// History: every event of the patient's chain, verified in this browser
// by the WebAssembly verifier before anything is shown.
'use strict';

document.addEventListener('DOMContentLoaded', async () => {
  const s = Vigie.requireSession(['patient']);
  if (!s) return;
  const { t, el, svg } = Vigie;
  const verdictBox = document.getElementById('verdict');
  const logBox = document.getElementById('log-status');
  const form = document.getElementById('filters');
  let report = null, described = [], keyInfo = null, growth = null;

  function showVerdict() {
    if (!report) return;
    const failed = report.events.filter(e => e.verdict === 'failed').length;
    const promised = report.events.filter(e => e.verdict === 'promised').length;
    if (report.ok) {
      const cp = report.checkpoint;
      Vigie.status(verdictBox, 'verified', t('verify.ok', { n: report.events.length }),
        (cp ? t('verify.okDetail', { size: cp.size, origin: cp.origin }) : '') + (promised ? ' ' + t('verify.promised', { n: promised }) : ''));
    } else {
      Vigie.status(verdictBox, 'failed', t('verify.failed', { n: failed }), (report.problems || []).join(' · '));
      verdictBox.setAttribute('role', 'alert');
    }
    verdictBox.dataset.events = report.events.length;
    verdictBox.dataset.failed = failed;
    const notes = [];
    if (keyInfo && keyInfo.changed) notes.push(['failed', t('keys.changed')]);
    if (keyInfo && keyInfo.policy_changed) notes.push(['failed', t('keys.policyChanged')]);
    if (growth && growth.rollback) notes.push(['failed', Vigie.growthText(growth)]);
    else if (growth && !growth.ok) notes.push(['failed', t('log.inconsistent', { detail: (growth.problems || []).join(' · ') })]);
    else if (growth) notes.push(['verified', t('log.consistent')]);
    else if (keyInfo && keyInfo.first_use) notes.push(['warning', t('keys.firstUse')]);
    if (notes.length) {
      const worst = notes.find(n => n[0] === 'failed') || notes[0];
      Vigie.status(logBox, worst[0], notes.map(n => n[1]).join(' '));
      if (worst[0] === 'failed') logBox.setAttribute('role', 'alert');
      if (growth && growth.rollback) Object.assign(logBox.dataset, { rollback: growth.rollback, seen: growth.seen, now: growth.now });
    }
    document.getElementById('pinned-key').textContent = keyInfo ? VigieText.escape(keyInfo.checkpoint_key) : '';
  }

  function filters() {
    const from = Vigie.parseDay(form.from.value), to = Vigie.parseDay(form.to.value);
    const err = document.getElementById('filter-error'), fromErr = document.getElementById('f-from-error');
    const bad = key => t('field.named', { field: t(key), problem: t('field.err.date') });
    Vigie.fieldError(form.from, fromErr, from === null ? bad('filter.from') : '');
    Vigie.fieldError(form.to, err, to === null ? bad('filter.to') : from && to && to < from ? t('filter.err.order') : '');
    if (from === null || to === null || (from && to && to < from)) return null;
    return { from, to, pro: form.professional.value, outcome: form.outcome.value, all: form.all.checked };
  }
  function matches(v, f) {
    const day = (v.time || '').slice(0, 10);
    if (f.from && day < f.from) return false;
    if (f.to && day > f.to) return false;
    if (!f.all && v.kind !== 'access' && v.verdict !== 'failed') return false;
    if (f.pro && v.rpps !== f.pro) return false;
    if (f.outcome && v.outcome !== f.outcome) return false;
    return true;
  }

  function render() {
    const f = filters();
    if (!f) return;
    described = report.events.map(VigieEvents.describe);
    const shown = described.filter(v => matches(v, f)).reverse(); // newest first
    document.querySelector('#events tbody').replaceChildren(...shown.map(v => {
      const tr = VigieEvents.row(v);
      tr.append(actions(v));
      return tr;
    }));
    document.getElementById('count').textContent = t('history.count', { n: shown.length, total: described.length });
    drawChart(shown.filter(v => v.kind === 'access'));
    // professionals for the filter, kept selected across renders
    const sel = form.professional, cur = sel.value;
    const pros = new Map();
    described.filter(v => v.rpps).forEach(v => pros.set(v.rpps, v.who[0]));
    sel.replaceChildren(el('option', { value: '', text: t('filter.all') }), ...[...pros].map(([rpps, who]) => el('option', { value: rpps, text: who })));
    sel.value = cur;
    showVerdict();
  }

  // actions are the one-click changes of the patient's consent from an
  // access: block its professional; hide its document. Each is confirmed
  // in a dialog that says what changes.
  function actions(v) {
    const td = el('td', { 'data-label': t('col.actions') });
    if (v.kind !== 'access' || !v.rpps || v.verdict === 'failed') return td;
    const who = VigieEvents.name(v.rpps) || 'RPPS ' + v.rpps;
    const block = el('button', { type: 'button', class: 'secondary', 'data-action': 'block', text: t('history.block') });
    block.setAttribute('aria-label', t('history.blockLabel', { who }));
    block.addEventListener('click', () => confirmChange(block, t('history.blockTitle', { who }), t('history.blockText', { who }), t('history.blockOk'),
      { id: Vigie.directives.blockID(v.rpps), block_professional: { rpps: v.rpps } }, t('history.blocked', { who })));
    td.append(block);
    if (v.doc) {
      const hide = el('button', { type: 'button', class: 'secondary', 'data-action': 'hide', text: t('history.hide') });
      hide.setAttribute('aria-label', t('history.hideLabel', { doc: v.doc }));
      hide.addEventListener('click', () => confirmChange(hide, t('history.hideTitle', { doc: v.doc }), t('history.hideText', { doc: v.doc }), t('history.hideOk'),
        { id: Vigie.directives.hideID(v.doc), hide_document: { document_id: v.doc } }, t('history.hidden', { doc: v.doc })));
      td.append(hide);
    }
    return td;
  }
  // confirmChange asks in a modal dialog, then adds the directive and says
  // so; the focus goes back to the button that opened the dialog.
  function confirmChange(opener, title, text, ok, directive, done) {
    const dialog = document.getElementById('confirm'), box = document.getElementById('action-status');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-ok').textContent = ok;
    dialog.returnValue = '';
    dialog.onclose = async () => {
      opener.focus();
      if (dialog.returnValue !== 'ok') return;
      try {
        const version = await Vigie.directives.add(directive);
        Vigie.status(box, 'verified', done, t('consent.saved', { version }));
        box.dataset.version = version;
      } catch (e) {
        if (e instanceof Vigie.ApiError && e.status === 401) return;
        Vigie.status(box, 'error', t('consent.notSaved'), e.message);
      }
    };
    dialog.showModal();
    document.getElementById('confirm-cancel').focus();
  }

  // drawChart draws accesses per month, stacked by outcome, as SVG.
  function drawChart(accesses) {
    const box = document.getElementById('chart');
    if (!accesses.length) { box.replaceChildren(el('p', { class: 'small', text: t('history.noAccess') })); return; }
    const key = d => d.getUTCFullYear() * 12 + d.getUTCMonth();
    const months = new Map();
    accesses.forEach(v => {
      const k = key(new Date(v.time));
      const m = months.get(k) || { allow: 0, deny: 0, btg: 0 };
      m[v.outcome]++;
      months.set(k, m);
    });
    const last = Math.max(...months.keys()), first = Math.max(Math.min(...months.keys()), last - 23);
    const n = last - first + 1, W = 720, H = 220, left = 36, bottom = 30, top = 10;
    const max = Math.max(1, ...[...months.values()].map(m => m.allow + m.deny + m.btg));
    const bw = Math.min((W - left - 10) / n, 60), y = c => (H - bottom - top) * c / max;
    const bars = [];
    for (let i = 0; i < n; i++) {
      const m = months.get(first + i) || { allow: 0, deny: 0, btg: 0 };
      const date = new Date(Date.UTC(Math.floor((first + i) / 12), (first + i) % 12, 1));
      let base = H - bottom;
      const g = svg('g', null, svg('title', null, t('chart.month', { month: Vigie.fmtMonth(date), allow: m.allow, deny: m.deny, btg: m.btg })));
      for (const o of ['allow', 'btg', 'deny']) {
        if (!m[o]) continue;
        base -= y(m[o]);
        g.append(svg('rect', { class: o, x: left + i * bw + 2, y: base, width: Math.max(bw - 4, 2), height: y(m[o]) }));
      }
      if (n <= 12 || i % Math.ceil(n / 12) === 0) g.append(svg('text', { x: left + i * bw + bw / 2, y: H - bottom + 16, 'text-anchor': 'middle' }, Vigie.fmtMonth(date)));
      bars.push(g);
    }
    const total = accesses.length, denied = accesses.filter(v => v.outcome === 'deny').length, btg = accesses.filter(v => v.outcome === 'btg').length;
    box.replaceChildren(svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc' },
      svg('desc', { id: 'chart-desc' }, t('chart.summary', { n: total, deny: denied, btg })),
      svg('line', { class: 'axis', x1: left, y1: H - bottom, x2: W - 5, y2: H - bottom }),
      svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: H - bottom }),
      svg('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' }, String(max)),
      svg('text', { x: left - 6, y: H - bottom, 'text-anchor': 'end' }, '0'),
      bars));
  }

  form.addEventListener('input', () => report && render());
  form.addEventListener('submit', ev => ev.preventDefault());
  document.addEventListener('vigie:lang', () => report && render());

  document.getElementById('pin-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const input = document.getElementById('pin-key'), err = document.getElementById('pin-error');
    const keys = input.value.trim().split(/\s+/).filter(Boolean);
    const cp = keys.find(k => !k.split('+')[0].endsWith('/receipt')), rc = keys.find(k => k.split('+')[0].endsWith('/receipt'));
    if (!cp || cp.split('+').length !== 3) { Vigie.fieldError(input, err, t('keys.err.format')); input.focus(); return; }
    Vigie.fieldError(input, err, '');
    Vigie.pinKeys(cp, rc || (keyInfo && keyInfo.receipt_key));
    location.reload();
  });

  try {
    await Promise.all([VigieEvents.loadTexts(), Vigie.verifier()]);
    report = await Vigie.verifyHistory();
    keyInfo = report.keys;
    growth = report.log || null;
    // The server cannot read one of its own events (DATA_LOSS): its
    // storage was altered. A failed verification, not a network error.
    const unreadable = (report.findings || []).find(f => f.kind === 'unreadable-event');
    if (unreadable) {
      Vigie.status(verdictBox, 'failed', t('verify.unreadable', { seq: unreadable.seq || '?' }), t('verify.unreadableHelp'));
      verdictBox.setAttribute('role', 'alert');
      return;
    }
    await VigieEvents.loadRules(report.events);
    render();
  } catch (e) {
    if (e instanceof Vigie.ApiError && e.status === 401) return;
    Vigie.status(verdictBox, 'error', t('error.load'), e.message);
  }
});
