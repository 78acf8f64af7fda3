// Vigie portal: what every page shares. The bearer token lives in this
// tab's sessionStorage only (never in a URL, never in localStorage); the
// API decides what it may see. No inline script: the CSP forbids it.
'use strict';

const Vigie = (() => {
  const TOKEN = 'vigie.token', WHO = 'vigie.identity', MESSAGE = 'vigie.signinMessage', LANG = 'vigie.lang';
  const PINNED = 'vigie.pinnedKeys', LAST_CP = 'vigie.lastCheckpoint';
  let lang = localStorage.getItem(LANG) === 'en' ? 'en' : 'fr';

  // t returns the text of key in the page's language with {name} replaced
  // by vars.name, and {name:one|many} by one or many as vars.name is
  // singular or plural in that language.
  function t(key, vars) {
    let s = (I18N[lang] && I18N[lang][key]) ?? I18N.fr[key] ?? key;
    s = s.replace(/\{(\w+):([^|{}]*)\|([^{}]*)\}/g, (m, k, one, many) => {
      const n = Number((vars || {})[k]);
      return (lang === 'fr' ? Math.abs(n) < 2 : n === 1) ? one : many;
    });
    for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(VigieText.escape(v));
    return s;
  }
  function applyI18n(root) {
    (root || document).querySelectorAll('[data-i18n]').forEach(el => { el.textContent = t(el.dataset.i18n); });
    document.documentElement.lang = lang;
    document.title = t(document.body.dataset.title) + ' – Vigie';
  }
  function setLang(l) {
    lang = l;
    localStorage.setItem(LANG, l);
    renderHeader();
    applyI18n();
    document.dispatchEvent(new CustomEvent('vigie:lang'));
  }

  // claims decodes a JWT's payload, unverified: only to tell an expired
  // token early. The server verifies every call.
  function claims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = new TextDecoder().decode(Uint8Array.from(atob(part), c => c.charCodeAt(0)));
      const c = JSON.parse(json);
      return typeof c === 'object' && c ? c : null;
    } catch (e) { return null; }
  }
  // session is the token and who the server said it is (api/identity:
  // role and organisations, mapped from the provider's claims), kept
  // together at the sign-in.
  function session() {
    const token = sessionStorage.getItem(TOKEN);
    const c = token && claims(token);
    let who = null;
    try { who = JSON.parse(sessionStorage.getItem(WHO) || 'null'); } catch (e) { who = null; }
    if (!c) return null;
    // A token put here by other means than the sign-in: its own claims
    // choose the pages; the server still verifies every call.
    if (!who || typeof who.role !== 'string') who = { role: c.role, organizations: c.orgs };
    if (typeof who.role !== 'string') return null;
    return { token, claims: c, role: who.role, orgs: Array.isArray(who.organizations) ? who.organizations : [] };
  }
  function startSession(token, who) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(WHO, JSON.stringify({ role: who.role, organizations: who.organizations }));
  }
  // signOut forgets the token and goes to the sign-in page, which shows
  // message (a key of I18N, or {key, detail}).
  function signOut(message) {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(WHO);
    if (message) sessionStorage.setItem(MESSAGE, JSON.stringify(message));
    location.replace('index.html');
  }
  function takeSignInMessage() {
    const m = sessionStorage.getItem(MESSAGE);
    sessionStorage.removeItem(MESSAGE);
    try { return m ? JSON.parse(m) : null; } catch (e) { return null; }
  }
  function expired(c) { return typeof c.exp !== 'number' || c.exp * 1000 <= Date.now(); }
  // requireSession returns the session if its role is one of roles, or
  // leaves for the sign-in page with a message.
  function requireSession(roles) {
    const s = session();
    if (!s) { signOut({ key: 'signin.needed' }); return null; }
    if (expired(s.claims)) { signOut({ key: 'signin.expired' }); return null; }
    if (!roles.includes(s.role)) { signOut({ key: 'signin.wrongRole' }); return null; }
    return s;
  }
  function homeOf(role) { return role === 'patient' ? 'history.html' : 'audit.html'; }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status; this.body = body;
    }
  }
  // request calls the API with the session's token, and returns the
  // response. A call over the caller's rate (429) was refused before
  // anything was done: it is retried, a little later each time.
  async function request(method, path, body) {
    const s = session();
    const headers = { Accept: 'application/json' };
    if (s) headers.Authorization = 'Bearer ' + s.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    for (let attempt = 0; ; attempt++) {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit', redirect: 'error' });
      if (r.status !== 429 || attempt >= 6) return r;
      await new Promise(ok => setTimeout(ok, 250 * 2 ** attempt));
    }
  }
  function signOutRejected(text) {
    let msg = ''; try { msg = JSON.parse(text).message; } catch (e) { /* not JSON */ }
    signOut({ key: 'signin.rejected', detail: msg });
    throw new ApiError(401, { message: msg });
  }
  // api calls the JSON API with the session's token. A 401 ends the
  // session: the sign-in page says why.
  async function api(method, path, body, opts) {
    const r = await request(method, path, body);
    const text = opts && opts.raw ? null : await r.text();
    if (r.status === 401 && !(opts && opts.noSignOut)) signOutRejected(text);
    if (opts && opts.raw) {
      if (!r.ok) throw new ApiError(r.status, null);
      return new Uint8Array(await r.arrayBuffer());
    }
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }
  // pool maps items with f, at most n calls at a time, in order.
  async function pool(items, n, f) {
    const out = new Array(items.length);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) { const i = next++; out[i] = await f(items[i], i); }
    }));
    return out;
  }
  // pages fetches every page of a list route.
  async function allPages(path, field, pageSize) {
    const out = [];
    let token = '';
    for (let i = 0; i < 1000; i++) {
      const sep = path.includes('?') ? '&' : '?';
      const page = await api('GET', path + sep + 'page_size=' + pageSize + (token ? '&page_token=' + encodeURIComponent(token) : ''));
      out.push(page);
      token = page.next_page_token;
      if (!token) break;
    }
    return out;
  }

  // The verifier: cmd/verify-wasm, loaded once.
  let verifierPromise = null;
  function verifier() {
    if (!verifierPromise) {
      verifierPromise = (async () => {
        const go = new Go();
        const res = await WebAssembly.instantiateStreaming(fetch('verify.wasm', { cache: 'no-cache' }), go.importObject);
        go.run(res.instance);
        for (let i = 0; i < 200 && !(globalThis.vigieVerify && globalThis.vigieVerify.ready); i++) {
          await new Promise(r => setTimeout(r, 10));
        }
        if (!globalThis.vigieVerify) throw new Error('verifier did not start');
        return globalThis.vigieVerify;
      })();
    }
    return verifierPromise;
  }
  // fetchForVerifier is the verifier's access to the API (report.Fetch):
  // GET path, answered as {status, text}. The verifier asks what it needs
  // and parses every answer; the page parses no note.
  async function fetchForVerifier(path) {
    const r = await request('GET', path);
    const text = await r.text();
    if (r.status === 401) signOutRejected(text);
    return { status: r.status, text };
  }
  // verify runs a function of the verifier (cmd/verify-wasm) on input.
  async function verify(fn, input) {
    const v = await verifier();
    return JSON.parse(await v[fn](JSON.stringify(input), fetchForVerifier));
  }

  // The keys this browser pinned (on first use, once a verification
  // succeeded, or pasted by the user from an independent source); the
  // verifier decides which to trust (ledger/audit PinKeys).
  function pinnedKeys() {
    try { const k = JSON.parse(localStorage.getItem(PINNED)); return k && k.checkpoint_key ? k : null; } catch (e) { return null; }
  }
  // The witness policy is pinned beside the keys, by the same path: the
  // one the server serves (GET /witness-policy) on first use, kept when
  // keys are pasted; a policy served later that differs is a finding.
  function pinKeys(checkpointKey, receiptKey, witnessPolicy) {
    const k = { checkpoint_key: checkpointKey, receipt_key: receiptKey };
    const policy = witnessPolicy !== undefined ? witnessPolicy : ((pinnedKeys() || {}).witness_policy || '');
    if (policy) k.witness_policy = policy;
    localStorage.setItem(PINNED, JSON.stringify(k));
  }
  // keepKeys pins the keys (and witness policy) a successful verification
  // trusted on first use.
  function keepKeys(keys) { if (keys && keys.pin) pinKeys(keys.pin.checkpoint_key, keys.pin.receipt_key, keys.pin.witness_policy || ''); }

  // verifyHistory verifies the patient's history against the keys and
  // the state this browser kept (the newest checkpoint verified, the head
  // of the chain), and keeps what the verifier says to keep.
  async function verifyHistory() {
    let state = null;
    try { state = JSON.parse(localStorage.getItem(LAST_CP)); } catch (e) { state = null; }
    const rep = await verify('history', { keys: { pinned: pinnedKeys() }, state, now: new Date().toISOString() });
    if (rep.error) throw new Error(rep.error);
    keepKeys(rep.keys);
    if (rep.state) localStorage.setItem(LAST_CP, JSON.stringify(rep.state));
    return rep;
  }
  // growthText says what the verifier found of the log's growth: a
  // rollback, a fork, a size the log refuses to prove.
  function growthText(g) { return t('log.' + g.rollback, { seen: g.seen, now: g.now }); }
  // errorInfo is the google.rpc.ErrorInfo detail of the API's answer e
  // with this reason (api/server/errors.go), or null: the portal acts on
  // reasons, never on the English text of the message.
  function errorInfo(e, reason) {
    const details = e instanceof ApiError && e.body && Array.isArray(e.body.details) ? e.body.details : [];
    return details.find(d => d && d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo' && d.reason === reason) || null;
  }

  function b64(bytes) {
    if (typeof bytes === 'string') return bytes;
    let s = ''; bytes.forEach(c => { s += String.fromCharCode(c); });
    return btoa(s);
  }
  function unb64(s) { return Uint8Array.from(atob(s), c => c.charCodeAt(0)); }

  // el builds an element: el('td', {class: 'x', 'data-label': 'y'}, child...).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = VigieText.escape(v); else e.setAttribute(k, v === true ? '' : v);
    }
    // Strings go in as text nodes, escaped: never as HTML (see text.js).
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(typeof c === 'string' ? VigieText.escape(c) : c);
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) e.setAttribute(k, v);
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function fmtTime(iso) {
    if (!iso) return '';
    return new Intl.DateTimeFormat(lang === 'fr' ? 'fr-FR' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
  }
  // fmtMonth names a month with its whole year ("déc. 2026"): "déc. 26"
  // would read as a day.
  function fmtMonth(d) {
    return new Intl.DateTimeFormat(lang === 'fr' ? 'fr-FR' : 'en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' }).format(d);
  }
  // parseDay reads a date field as the pages show dates, jj/mm/aaaa
  // (or j/m/aaaa, with / . or - between; or aaaa-mm-jj), whatever the
  // browser's language: native date inputs would follow the browser's
  // locale. It returns "aaaa-mm-jj", "" for an empty field, or null for a
  // date that does not exist.
  function parseDay(s) {
    s = s.trim();
    if (!s) return '';
    let m = s.match(/^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/), d, mo, y;
    if (m) [d, mo, y] = [m[1], m[2], m[3]].map(Number);
    else if ((m = s.match(/^(\d{4})-(\d{2})-(\d{2})$/))) [y, mo, d] = [m[1], m[2], m[3]].map(Number);
    else return null;
    const date = new Date(Date.UTC(y, mo - 1, d));
    if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return null;
    return date.toISOString().slice(0, 10);
  }
  function status(box, state, title, detail) {
    box.hidden = false;
    box.dataset.state = state;
    box.replaceChildren(el('strong', { text: title }), detail ? el('span', { text: detail }) : '');
  }
  // fieldError marks a form field invalid with a message, or clears it.
  function fieldError(input, errorBox, message) {
    if (message) {
      input.setAttribute('aria-invalid', 'true');
      errorBox.textContent = VigieText.escape(message); errorBox.hidden = false;
    } else {
      input.removeAttribute('aria-invalid');
      errorBox.textContent = ''; errorBox.hidden = true;
    }
  }

  function renderHeader() {
    const top = document.getElementById('top');
    if (!top) return;
    const s = session();
    const here = document.body.dataset.page;
    const links = [];
    if (s && s.role === 'patient') links.push(['history.html', 'nav.history', 'history'], ['consent.html', 'nav.consent', 'consent']);
    if (s && s.role !== 'patient') links.push(['audit.html', 'nav.audit', 'audit']);
    const nav = el('nav', { 'aria-label': t('nav.label') }, el('ul', null, links.map(([href, key, page]) =>
      el('li', null, el('a', { href, 'aria-current': page === here ? 'page' : null, text: t(key) })))));
    const other = lang === 'fr' ? 'en' : 'fr';
    const langBtn = el('button', { type: 'button', lang: other, text: other === 'en' ? 'English' : 'Français', id: 'lang' });
    langBtn.addEventListener('click', () => setLang(other));
    const tools = el('div', { class: 'tools' }, langBtn);
    if (s) {
      const out = el('button', { type: 'button', id: 'signout', text: t('nav.signout') });
      out.addEventListener('click', () => signOut({ key: 'signin.signedOut' }));
      tools.append(out);
    }
    top.replaceChildren(el('a', { class: 'brand', href: s ? homeOf(s.role) : 'index.html', text: 'Vigie' }), nav, tools);
  }

  // The patient's directives, as the consent page and the history's
  // one-click actions change them (PUT /v1/me/consent).
  const KINDS = ['block_professional', 'block_organization', 'allow_professional', 'treating_physician', 'extended_rights',
    'hide_document', 'hide_document_type', 'hide_everything', 'oppose_emergency', 'opt_out'];
  const directives = {
    kindOf: d => KINDS.find(k => d[k]),
    // clean keeps what PUT takes: the id, the validity if set, the kind.
    clean(d) {
      const k = directives.kindOf(d), out = { id: d.id, [k]: d[k] };
      if (d.valid_from) out.valid_from = d.valid_from;
      if (d.valid_until) out.valid_until = d.valid_until;
      return out;
    },
    // The ids of a block and of a hidden document: one directive each,
    // whichever page adds it.
    blockID: rpps => 'block-' + rpps,
    hideID: doc => 'hide-' + Array.from(new TextEncoder().encode(doc)).map(b => b.toString(16).padStart(2, '0')).join('').slice(0, 58),
    // add adds (or replaces, by id) one directive on top of the current
    // consent, reading it again when it changed meanwhile (409), and
    // returns the new version.
    async add(d) {
      for (let i = 0; ; i++) {
        const c = await api('GET', '/v1/me/consent');
        const sent = c.directives.filter(x => x.id !== d.id).map(directives.clean).concat([d]);
        try {
          return (await api('PUT', '/v1/me/consent', { expected_version: c.version, directives: sent })).version;
        } catch (e) {
          if (!(e instanceof ApiError && e.status === 409) || i >= 2) throw e;
        }
      }
    },
  };

  document.addEventListener('DOMContentLoaded', () => { renderHeader(); applyI18n(); });

  return {
    t, get lang() { return lang; }, applyI18n, session, startSession, signOut, takeSignInMessage, expired, requireSession, homeOf, claims,
    api, allPages, pool, ApiError, directives, verify, verifier, verifyHistory, pinnedKeys, pinKeys, keepKeys, growthText, errorInfo, b64, unb64, el, svg, fmtTime, fmtMonth, parseDay, status, fieldError,
  };
})();
