// Consent: the patient's directives. Each change is one compare-and-swap
// on the version read (PUT /v1/me/consent with expected_version); when
// someone else changed the consent meanwhile (HTTP 409), the change is
// kept and offered again on top of the new version.
'use strict';

document.addEventListener('DOMContentLoaded', async () => {
  const s = Vigie.requireSession(['patient']);
  if (!s) return;
  const { t, el } = Vigie;
  const PENDING = 'vigie.pendingConsent';
  const statusBox = document.getElementById('consent-status');
  const staleBox = document.getElementById('stale');
  let consent = null;

  const { kindOf, clean } = Vigie.directives;
  function describe(d) {
    const k = kindOf(d), v = d[k] || {};
    return t('directive.' + k, { rpps: v.rpps, finess: v.finess, doc: v.document_id, type: v.document_type });
  }

  // A change is an operation applied to whichever version is current.
  function apply(op, directives) {
    let out = directives.map(clean);
    if (op.remove) out = out.filter(d => d.id !== op.remove);
    if (op.replaceKind) out = out.filter(d => !d[op.replaceKind]);
    if (op.add) out = out.filter(d => d.id !== op.add.id).concat([op.add]);
    return out;
  }

  async function load() {
    consent = await Vigie.api('GET', '/v1/me/consent');
    const list = document.getElementById('directives');
    list.replaceChildren(...consent.directives.map(d => {
      const btn = el('button', { type: 'button', class: 'secondary', text: t('consent.remove') });
      btn.setAttribute('aria-label', t('consent.removeLabel', { what: describe(d) }));
      btn.addEventListener('click', () => save({ remove: d.id, label: t('consent.removeLabel', { what: describe(d) }) }));
      return el('li', { 'data-id': d.id }, describe(d), ' ', btn);
    }));
    if (!consent.directives.length) list.replaceChildren(el('li', { text: t('consent.none') }));
    document.getElementById('oppose').checked = consent.directives.some(d => d.oppose_emergency);
    document.getElementById('optout').checked = consent.directives.some(d => d.opt_out);
    const pages = await Vigie.allPages('/v1/me/consent/history', 'versions', 100);
    document.getElementById('versions').replaceChildren(...pages.flatMap(p => p.versions).reverse().map(v =>
      el('li', { text: t('consent.versionLine', { version: v.version, time: Vigie.fmtTime(v.update_time), by: v.updated_by === 'patient' ? t('event.you') : v.updated_by, n: v.directives.length }) })));
    const p = pending();
    if (!p) Vigie.status(statusBox, 'verified', t('consent.version', { version: consent.version }), consent.update_time ? t('consent.since', { time: Vigie.fmtTime(consent.update_time) }) : '');
    renderAccessed();
  }

  function pending() { try { return JSON.parse(sessionStorage.getItem(PENDING)); } catch (e) { return null; } }

  // INPUT is the form field where each kind of directive is entered.
  const INPUT = { block_professional: 'block-rpps', treating_physician: 'physician-rpps', hide_document: 'hide-doc' };
  // problemText says a field's problem in the page's language, from its
  // kind (consent.ProblemKind, the ErrorInfo metadata "problem"), never
  // from the English message: an RPPS or FINESS number not well formed
  // says what it should be, a kind this page does not know is "invalid".
  // other describes the directive the problem names, max its limit.
  function problemText(kind, field, other, max) {
    if (kind === 'invalid_format' && /(^|\.)(professional|rpps)$/.test(field)) return t('field.err.rpps');
    if (kind === 'invalid_format' && /(^|\.)(organization|finess)$/.test(field)) return t('field.err.finess');
    const known = ['required', 'too_long', 'too_many', 'invalid_format', 'same_id', 'duplicate', 'blocked_and_allowed', 'second_physician'];
    return t('problem.' + (known.includes(kind) ? kind : 'invalid'), { other: other ? describe(other) : '', max });
  }
  // refusal reads a 400 about a field (its ErrorInfo reason INVALID_FIELD
  // names the field, "directives[3].professional", the problem's kind,
  // and the other directive it names, "directives[0]") as the directive
  // at fault (an index into sent), the other directive, and the problem
  // in the page's language.
  function refusal(e, sent) {
    const info = Vigie.errorInfo(e, 'INVALID_FIELD');
    const md = (info && info.metadata) || {};
    const field = md.field || '';
    const m = field.match(/^directives(?:\[(\d+)\])?(?:\.[a-z_]+)*$/);
    if (!m) return null;
    const index = m[1], o = ((md.other || '').match(/^directives\[(\d+)\]$/) || [])[1];
    const at = index === undefined ? null : sent[Number(index)], other = o === undefined ? null : sent[Number(o)];
    return { at, other, text: problemText(md.problem, field, other, md.limit) };
  }
  // rowOf is the list item showing the current directive with this id.
  const rowOf = id => [...document.querySelectorAll('#directives li[data-id]')].find(li => li.dataset.id === id);
  function markRow(li, message) {
    const id = 'err-' + Array.from(li.dataset.id).map(c => c.charCodeAt(0).toString(16)).join('');
    li.append(el('p', { class: 'field-error', id, text: message }));
    li.classList.add('invalid');
    const btn = li.querySelector('button');
    if (btn) btn.setAttribute('aria-describedby', id);
    return btn;
  }
  function clearMarks() {
    document.querySelectorAll('#directives .field-error').forEach(p => p.remove());
    document.querySelectorAll('#directives li.invalid').forEach(li => { li.classList.remove('invalid'); const b = li.querySelector('button'); if (b) b.removeAttribute('aria-describedby'); });
  }
  // showRefusal puts the server's reason on the form field of the change
  // (or on the row of the directive at fault) and on the row of the
  // directive it conflicts with; it returns what to focus.
  function showRefusal(r, op) {
    let focus = null;
    for (const [d, isAt] of [[r.at, true], [r.other, false]]) {
      if (!d) continue;
      const k = kindOf(d);
      if (op.add && d.id === op.add.id && INPUT[k]) {
        const input = document.getElementById(INPUT[k]);
        Vigie.fieldError(input, document.getElementById(INPUT[k] + '-error'), t('field.named', { field: t(k === 'hide_document' ? 'field.document' : 'field.rpps'), problem: r.text }));
        focus = focus || input;
      } else {
        const li = rowOf(d.id);
        if (li) {
          const btn = markRow(li, isAt ? t('consent.err.row', { problem: r.text }) : t('consent.err.conflict', { change: op.label }));
          focus = focus || btn;
        }
      }
    }
    return focus;
  }
  function showPending(titleKey, detail) {
    const title = document.getElementById('stale-title');
    title.dataset.i18n = titleKey;
    title.textContent = t(titleKey);
    document.getElementById('stale-detail').textContent = VigieText.escape(detail);
    staleBox.hidden = false;
  }

  // save applies op to the current version. A change refused or not made
  // stays pending (sessionStorage) until it is saved or discarded, even
  // while other changes are saved meanwhile.
  async function save(op) {
    const earlier = pending();
    sessionStorage.setItem(PENDING, JSON.stringify(op));
    staleBox.hidden = true;
    clearMarks();
    const sent = apply(op, consent.directives);
    try {
      const r = await Vigie.api('PUT', '/v1/me/consent', { expected_version: consent.version, directives: sent });
      const other = earlier && JSON.stringify(earlier) !== JSON.stringify(op) ? earlier : null;
      if (other) sessionStorage.setItem(PENDING, JSON.stringify(other)); else sessionStorage.removeItem(PENDING);
      await load();
      Vigie.status(statusBox, 'verified', t('consent.saved', { version: r.version }), op.label);
      statusBox.dataset.version = r.version;
      if (other) showPending('consent.pending', t('consent.pendingDetail', { change: other.label }));
      return true;
    } catch (e) {
      if (!(e instanceof Vigie.ApiError)) { Vigie.status(statusBox, 'error', t('error.load'), e.message); return false; }
      if (e.status === 409) {
        // Someone changed the consent meanwhile: read it again, keep the
        // change, and let the patient look before retrying.
        const before = consent.version;
        await load();
        showPending('consent.stale', t('consent.staleDetail', { before, now: consent.version, change: op.label }));
        staleBox.querySelector('#retry').focus();
        Vigie.status(statusBox, 'warning', t('consent.notSaved'), '');
        return false;
      }
      if (e.status === 400) {
        // Refused (e.g. blocking and allowing the same professional): say
        // why where it applies, and keep the change for a retry.
        const r = refusal(e, sent);
        const focus = r && showRefusal(r, op);
        Vigie.status(statusBox, 'error', t('consent.notSaved'), r ? r.text.charAt(0).toUpperCase() + r.text.slice(1) + '.' : e.message);
        statusBox.dataset.refused = 'true';
        showPending('consent.refused', t('consent.refusedDetail', { change: op.label }));
        (focus || staleBox.querySelector('#retry')).focus();
        return false;
      }
      Vigie.status(statusBox, 'error', t('consent.notSaved'), e.message);
      return false;
    }
  }

  document.getElementById('retry').addEventListener('click', () => { const op = pending(); if (op) save(op); });
  document.getElementById('discard').addEventListener('click', () => { sessionStorage.removeItem(PENDING); staleBox.hidden = true; load(); });

  const rppsProblem = v => !v ? t('problem.required') : !/^[0-9]{11}$/.test(v) ? t('field.err.rpps') : '';
  function rppsForm(formId, inputId, build) {
    const form = document.getElementById(formId), input = document.getElementById(inputId), err = document.getElementById(inputId + '-error');
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      const v = input.value.replace(/\s/g, '');
      const problem = rppsProblem(v);
      Vigie.fieldError(input, err, problem && t('field.named', { field: t('field.rpps'), problem }));
      if (problem) { input.focus(); return; }
      if (await save(build(v))) input.value = '';
    });
  }
  rppsForm('block-form', 'block-rpps', rpps => ({ add: { id: Vigie.directives.blockID(rpps), block_professional: { rpps } }, label: t('directive.block_professional', { rpps }) }));
  rppsForm('physician-form', 'physician-rpps', rpps => ({ replaceKind: 'treating_physician', add: { id: 'treating-physician', treating_physician: { rpps } }, label: t('directive.treating_physician', { rpps }) }));

  document.getElementById('hide-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const input = document.getElementById('hide-doc'), err = document.getElementById('hide-doc-error');
    const doc = input.value.trim();
    const problem = !doc ? t('problem.required') : doc.length > 128 ? t('problem.too_long', { max: 128 }) : '';
    Vigie.fieldError(input, err, problem && t('field.named', { field: t('field.document'), problem }));
    if (problem) { input.focus(); return; }
    const id = Vigie.directives.hideID(doc);
    if (await save({ add: { id, hide_document: { document_id: doc } }, label: t('directive.hide_document', { doc }) })) input.value = '';
  });
  document.getElementById('emergency-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const on = document.getElementById('oppose').checked;
    save(on ? { replaceKind: 'oppose_emergency', add: { id: 'oppose-emergency', oppose_emergency: {} }, label: t('directive.oppose_emergency') }
      : { replaceKind: 'oppose_emergency', label: t('consent.emergencyOff') });
  });
  document.getElementById('optout-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const on = document.getElementById('optout').checked, confirm = document.getElementById('optout-confirm');
    const problem = on && !confirm.checked ? t('consent.optoutNeedsConfirm') : '';
    Vigie.fieldError(confirm, document.getElementById('optout-confirm-error'), problem);
    if (problem) { confirm.focus(); return; }
    save(on ? { replaceKind: 'opt_out', add: { id: 'opt-out', opt_out: {} }, label: t('directive.opt_out') }
      : { replaceKind: 'opt_out', label: t('consent.optoutOff') });
  });
  // The professionals who accessed the record (from the history, verified
  // in this browser), by name, each with a block switch.
  let accessed = [];
  function renderAccessed() {
    const blocked = new Set(consent.directives.filter(d => d.block_professional).map(d => d.block_professional.rpps));
    document.getElementById('accessed').replaceChildren(...accessed.map(rpps => {
      const id = 'acc-' + rpps, who = VigieEvents.whoIs(rpps);
      const sw = el('input', { type: 'checkbox', role: 'switch', id, 'data-rpps': rpps });
      sw.checked = blocked.has(rpps);
      sw.addEventListener('change', () => save(sw.checked
        ? { add: { id: Vigie.directives.blockID(rpps), block_professional: { rpps } }, label: t('directive.block_professional', { rpps }) }
        : { remove: Vigie.directives.blockID(rpps), label: t('consent.unblocked', { who }) }));
      return el('li', null, el('label', { class: 'check', for: id }, sw, ' ', who, ' — ', el('span', { text: t('consent.blockedSwitch') })));
    }));
    document.getElementById('accessed-status').textContent = t('consent.accessedCount', { n: accessed.length });
  }
  // The list is filled once the history is verified, which moves the forms
  // below it: aria-busy and data-state say when it has settled.
  function settleAccessed(state) {
    const list = document.getElementById('accessed');
    list.removeAttribute('aria-busy');
    list.dataset.state = state;
  }
  async function loadAccessed() {
    await Vigie.verifier();
    const rep = await Vigie.verifyHistory();
    const events = rep.events.filter(e => e.verdict !== 'failed' && e.kind === 'access' && e.payload);
    await VigieEvents.loadNames(events);
    accessed = [...new Set(events.map(e => e.payload.request.actor.rpps))];
    renderAccessed();
    settleAccessed('loaded');
  }

  // A search of the directory by name: block someone who never accessed
  // the record yet, or choose the treating physician.
  document.getElementById('search-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const input = document.getElementById('search-name'), err = document.getElementById('search-name-error');
    const name = input.value.trim();
    const problem = name.replace(/[^\p{L}\p{N}]/gu, '').length < 2 ? t('problem.too_short', { min: 2 }) : '';
    Vigie.fieldError(input, err, problem && t('field.named', { field: t('field.name'), problem }));
    if (problem) { input.focus(); return; }
    const list = document.getElementById('search-results'), status = document.getElementById('search-status');
    try {
      const r = await Vigie.api('GET', '/v1/directory/professionals?name=' + encodeURIComponent(name) + '&page_size=10');
      const found = r.professionals || [];
      found.forEach(VigieEvents.remember);
      status.textContent = t('consent.searchCount', { n: found.length });
      list.replaceChildren(...found.map(p => {
        const who = VigieEvents.whoIs(p.rpps);
        const block = el('button', { type: 'button', class: 'secondary', 'data-action': 'block', text: t('history.block') });
        block.setAttribute('aria-label', t('history.blockLabel', { who }));
        block.addEventListener('click', () => save({ add: { id: Vigie.directives.blockID(p.rpps), block_professional: { rpps: p.rpps } }, label: t('directive.block_professional', { rpps: p.rpps }) }));
        const choose = el('button', { type: 'button', class: 'secondary', 'data-action': 'physician', text: t('consent.choosePhysician') });
        choose.setAttribute('aria-label', t('consent.choosePhysicianLabel', { who }));
        choose.addEventListener('click', () => save({ replaceKind: 'treating_physician', add: { id: 'treating-physician', treating_physician: { rpps: p.rpps } }, label: t('directive.treating_physician', { rpps: p.rpps }) }));
        return el('li', { 'data-rpps': p.rpps }, who, ' ', block, choose);
      }));
    } catch (e) {
      if (e instanceof Vigie.ApiError && e.status === 401) return;
      status.textContent = t('error.load') + ' ' + e.message;
    }
  });

  document.addEventListener('vigie:lang', () => load());

  try {
    await load();
    const op = pending();
    if (op) showPending('consent.pending', t('consent.pendingDetail', { change: op.label }));
    await loadAccessed();
  } catch (e) {
    settleAccessed('error');
    if (!(e instanceof Vigie.ApiError && e.status === 401)) Vigie.status(statusBox, 'error', t('error.load'), e.message);
  }
});
