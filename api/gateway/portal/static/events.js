// What an event means, in words: shared by the history and the
// dashboard. Everything here reads the contents the verifier parsed from
// the bytes it hashed (report.EventReport), never the server's fields.
'use strict';

const VigieEvents = (() => {
  const { t, el } = Vigie;
  let texts = null;             // /portal/texts.json: wording of rules, directives, reasons
  const rules = new Map();      // rules version -> parsed national rules (hash checked)
  const rulesBytes = new Map(); // the same, as bytes, for the verifier
  const emergency = new Set();  // commitments of emergency accesses (judge)
  const pros = new Map();       // RPPS -> the professionals' directory entry
  const orgs = new Map();       // FINESS -> the establishments' directory entry

  async function loadTexts() {
    if (!texts) texts = await (await fetch('texts.json', { cache: 'no-cache' })).json();
  }
  function wording(group, kind) {
    const w = texts && texts[group] && texts[group][kind];
    return w ? w[Vigie.lang] : kind;
  }

  // loadRules fetches the national rules each access was decided under
  // (GET /v1/rules/{version}, public) for their labels, and uses them only
  // if their SHA-256 is the one the verified record names.
  async function loadRules(events) {
    const wanted = new Map();
    for (const e of events) {
      const d = e.payload && e.payload.decision;
      if (d && d.rules_version && !rules.has(String(d.rules_version))) wanted.set(String(d.rules_version), d.rules_hash);
    }
    for (const [v, hash] of wanted) {
      try {
        const bytes = await Vigie.api('GET', '/v1/rules/' + encodeURIComponent(v), undefined, { raw: true });
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        const hex = Array.from(digest, b => b.toString(16).padStart(2, '0')).join('');
        if (hex === hash) { rules.set(v, JSON.parse(new TextDecoder().decode(bytes))); rulesBytes.set(v, bytes); }
      } catch (e) { /* labels are a comfort: codes are shown instead */ }
    }
    await judge(events, []);
    await loadNames(events);
  }
  // loadNames looks up, one call per 500 numbers, the names of the
  // professionals and establishments that the verified events name
  // (POST /v1/directory:lookup, the public directories). The names are
  // shown beside the numbers; a number the directories lack, or a failed
  // lookup, shows the number alone.
  async function loadNames(events) {
    const actors = events.map(e => e.kind === 'access' && e.payload && e.payload.request && e.payload.request.actor).filter(Boolean);
    // The organisations readers and reviewers acted for.
    const readers = events.flatMap(e => (e.kind === 'ledger_read' && e.payload && e.payload.organizations) ||
      (e.kind === 'break_glass_review' && e.payload && e.payload.organization ? [e.payload.organization] : []));
    await lookup(actors.map(a => a.rpps), actors.map(a => a.organization).concat(readers));
  }
  // lookup looks up numbers not looked up yet.
  async function lookup(rppsList, finessList) {
    const r = [...new Set(rppsList.filter(n => n && !pros.has(n)))], f = [...new Set(finessList.filter(n => n && !orgs.has(n)))];
    try {
      for (let i = 0; i < Math.max(r.length, f.length); i += 500) {
        const resp = await Vigie.api('POST', '/v1/directory:lookup', { rpps: r.slice(i, i + 500), finess: f.slice(i, i + 500) });
        for (const p of resp.professionals || []) pros.set(p.rpps, p);
        for (const o of resp.establishments || []) orgs.set(o.finess, o);
      }
    } catch (e) { /* names are a comfort: numbers are shown instead */ }
  }
  // professional says who an RPPS number is: name, profession and
  // specialty from the directory, beside the number; the event's
  // profession and the number alone when the directory lacks it.
  function professional(rpps, profession) {
    const p = pros.get(rpps);
    if (!p) return profession + ' · RPPS ' + rpps;
    const esc = VigieText.escape;
    return t(p.specialty ? 'event.proSpecialty' : 'event.pro',
      { name: esc(p.name), profession: esc(p.profession || profession), specialty: esc(p.specialty || ''), rpps });
  }
  // organisation says which establishment a FINESS number is.
  function organisation(finess) {
    const o = orgs.get(finess);
    if (!o) return t('event.org', { org: finess });
    const esc = VigieText.escape;
    return t(o.town ? 'event.orgNamed' : 'event.orgNamedNoTown', { name: esc(o.name), town: esc(o.town || ''), org: finess });
  }
  // readerFor says who read or reviewed: the principal and the
  // organisations it acted for (ledger-read and review records of version
  // 2), by name beside their numbers.
  function readerFor(reader, finessList) {
    if (!finessList || !finessList.length) return reader;
    return t('event.readerFor', { reader, orgs: finessList.map(organisation).join(' ; ') });
  }
  // name is the professional's name, or "" when the directory lacks it.
  function name(rpps) {
    const p = pros.get(rpps);
    return p ? VigieText.escape(p.name) : '';
  }
  // judge asks the verifier (consent.JudgeAccesses, through
  // vigieAccesses: what vigie verify says too) which of events are
  // emergency accesses, remembered for describe, and which of reviews
  // (verified ones) decides each access it reviews: it returns {access
  // commitment: review commitment}. An emergency access is one whose
  // purpose is an emergency purpose of the rules it was decided under, or,
  // when those rules cannot be had, one an emergency rule allowed.
  async function judge(events, reviews) {
    await Vigie.verifier();
    const pick = e => ({ commitment: e.commitment, leaf_index: String(e.leaf_index), payload: e.payload });
    const rulesB64 = {};
    for (const [v, b] of rulesBytes) rulesB64[v] = Vigie.b64(b);
    const out = JSON.parse(globalThis.vigieAccesses(JSON.stringify({
      accesses: events.filter(e => e.kind === 'access' && e.payload).map(pick),
      reviews: reviews.filter(e => e.kind === 'break_glass_review' && e.verdict === 'verified' && e.payload).map(pick),
      rules: rulesB64,
    })));
    for (const c of out.emergency || []) emergency.add(c);
    return out.final || {};
  }
  function label(version, list, code) {
    const r = rules.get(String(version));
    const item = r && (r[list] || []).find(x => x.code === code);
    return item ? item[Vigie.lang] : code;
  }

  // describe turns a verified event into what the table shows.
  function describe(e) {
    const p = e.payload || {};
    const v = { seq: e.sequence, index: e.leaf_index, time: e.time, kind: e.kind, verdict: e.verdict, problems: e.problems || [], commitment: e.commitment };
    if (e.erased) return Object.assign(v, { what: t('event.erased'), who: '', why: '', outcome: null });
    if (!e.kind) return Object.assign(v, { what: t('event.unreadable'), who: '', why: '', outcome: null });
    switch (e.kind) {
      case 'access': {
        const rq = p.request || {}, d = p.decision || {}, a = rq.actor || {}, res = rq.resource || {};
        const rv = d.rules_version;
        const btg = emergency.has(e.commitment); // judge, after loadRules
        v.outcome = d.effect === 'ALLOW' ? (btg ? 'btg' : 'allow') : 'deny';
        v.rpps = a.rpps;
        v.doc = res.kind === 'document' ? res.document_id || '' : '';
        v.who = [professional(a.rpps, label(rv, 'professions', a.profession)),
          organisation(a.organization) + (a.sector ? ' · ' + label(rv, 'sectors', a.sector) : ''),
          a.care_team ? t('event.careTeam') : ''].filter(Boolean);
        const action = t('action.' + rq.action);
        v.what = res.kind === 'document'
          ? action + ' · ' + label(rv, 'document_types', res.document_type) + (res.document_id ? ' (' + res.document_id + ')' : '')
          : action + ' · ' + t('event.wholeRecord');
        v.why = [t('purpose.' + rq.purpose)].concat((d.grounds || []).map(g => wording(g.source, g.kind)));
        if (rq.justification) v.why.push(t('event.justification', { text: rq.justification }));
        return v;
      }
      case 'consent_change':
        return Object.assign(v, { who: p.author === 'patient' ? t('event.you') : p.author, what: t('event.consentChange', { version: p.version }), why: '', outcome: null });
      case 'ledger_read':
        return Object.assign(v, { who: p.reader === 'patient' ? t('event.you') : readerFor(p.reader, p.organizations), what: t('event.read', { n: p.events }), why: t('event.readMethod.' + p.method), outcome: null });
      case 'break_glass_review':
        return Object.assign(v, { who: readerFor(p.reviewer, p.organization ? [p.organization] : []), what: t('event.review.' + p.verdict), why: p.comment || '', outcome: null, reviewed: p.event });
      case 'erasure':
        return Object.assign(v, { who: p.requested_by || '', what: t('event.erasure.' + p.state), why: '', outcome: null });
      case 'enrolment':
        return Object.assign(v, { who: p.action === 'link' ? t('event.you') : e.service || '', what: p.action === 'unlink' ? t('event.enrolment.unlink', { issuer: p.issuer }) : t('event.enrolment.link', { issuer: p.issuer }), why: '', outcome: null });
      case 'rules_change':
        return Object.assign(v, { who: p.author, what: t('event.rules', { version: p.version }), why: '', outcome: null });
    }
    return Object.assign(v, { what: e.kind, who: '', why: '', outcome: null });
  }

  function verdictCell(v) {
    const sym = { verified: '✔', promised: '⏳', failed: '✖' }[v.verdict] || '?';
    const cell = [el('span', { class: 'badge ' + v.verdict, text: sym + ' ' + t('verdict.' + v.verdict) })];
    if (v.problems.length) cell.push(el('ul', { class: 'small' }, v.problems.map(p => el('li', { text: p }))));
    cell.push(el('div', { class: 'small mono', title: t('col.commitment'), text: '#' + v.index + ' · ' + (v.commitment || '').slice(0, 12) + '…' }));
    return cell;
  }
  function outcomeCell(v) {
    if (!v.outcome) return '';
    const sym = { allow: '✔', deny: '✖', btg: '⚠' }[v.outcome];
    return el('span', { class: 'badge ' + v.outcome, text: sym + ' ' + t('outcome.' + v.outcome) });
  }
  function lines(x) { return (Array.isArray(x) ? x : [x]).filter(Boolean).map((s, i) => i ? [el('br'), s] : s).flat(); }

  // row renders one described event as a table row.
  function row(v) {
    const cls = v.outcome === 'deny' ? 'deny' : v.outcome === 'btg' ? 'btg' : null;
    const tr = el('tr', { class: cls, 'data-verdict': v.verdict, 'data-outcome': v.outcome || '', 'data-seq': v.seq });
    tr.append(
      el('td', { 'data-label': t('col.when') }, Vigie.fmtTime(v.time)),
      el('td', { 'data-label': t('col.who') }, lines(v.who)),
      el('td', { 'data-label': t('col.what') }, lines(v.what)),
      el('td', { 'data-label': t('col.why') }, lines(v.why)),
      el('td', { 'data-label': t('col.outcome') }, outcomeCell(v)),
      el('td', { 'data-label': t('col.proof') }, verdictCell(v)));
    return tr;
  }

  // whoIs says who an RPPS number is, from the directory, or the number.
  function whoIs(rpps) { return pros.has(rpps) ? professional(rpps, '') : 'RPPS ' + rpps; }
  // remember keeps directory entries found otherwise (a search by name).
  function remember(p) { pros.set(p.rpps, p); }

  return { loadTexts, loadRules, loadNames, lookup, judge, describe, row, label, name, whoIs, organisation, remember };
})();
