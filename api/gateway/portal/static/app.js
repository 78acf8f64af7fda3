// Vigie portal: what every page shares. The bearer token lives in this
// tab's sessionStorage only (never in a URL, never in localStorage); the
// API decides what it may see. No inline script: the CSP forbids it.
'use strict';

const Vigie = (() => {
  const TOKEN = 'vigie.token', MESSAGE = 'vigie.signinMessage', LANG = 'vigie.lang';
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

  // claims decodes a JWT's payload, unverified: only to choose pages and
  // tell an expired token early. The server verifies every call.
  function claims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = new TextDecoder().decode(Uint8Array.from(atob(part), c => c.charCodeAt(0)));
      const c = JSON.parse(json);
      return typeof c === 'object' && c && typeof c.role === 'string' ? c : null;
    } catch (e) { return null; }
  }
  function session() {
    const token = sessionStorage.getItem(TOKEN);
    const c = token && claims(token);
    return c ? { token, claims: c, role: c.role } : null;
  }
  function startSession(token) { sessionStorage.setItem(TOKEN, token); }
  // signOut forgets the token and goes to the sign-in page, which shows
  // message (a key of I18N, or {key, detail}).
  function signOut(message) {
    sessionStorage.removeItem(TOKEN);
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
  // api calls the JSON API with the session's token. A 401 ends the
  // session: the sign-in page says why.
  async function api(method, path, body, opts) {
    const s = session();
    const headers = { Accept: 'application/json' };
    if (s) headers.Authorization = 'Bearer ' + s.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    // A call over the caller's rate (429) was refused before anything was
    // done: it is retried, a little later each time.
    for (let attempt = 0; ; attempt++) {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit', redirect: 'error' });
      if (r.status !== 429 || attempt >= 6) break;
      await new Promise(ok => setTimeout(ok, 250 * 2 ** attempt));
    }
    const text = opts && opts.raw ? null : await r.text();
    if (r.status === 401 && !(opts && opts.noSignOut)) {
      let msg = ''; try { msg = JSON.parse(text).message; } catch (e) { /* not JSON */ }
      signOut({ key: 'signin.rejected', detail: msg });
      throw new ApiError(401, { message: msg });
    }
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
  async function verify(fn, input) {
    const v = await verifier();
    return JSON.parse(v[fn](JSON.stringify(input)));
  }

  // logKeys returns the keys to verify with: the ones this browser pinned
  // (on first use, or pasted by the user from an independent source), and
  // whether the server now serves others.
  async function logKeys() {
    const served = await api('GET', '/v1/log/key');
    let pinned = null;
    try { pinned = JSON.parse(localStorage.getItem(PINNED)); } catch (e) { pinned = null; }
    if (!pinned || !pinned.checkpoint_key) {
      pinned = { checkpoint_key: served.checkpoint_key, receipt_key: served.receipt_key, origin: served.origin, firstUse: true };
      localStorage.setItem(PINNED, JSON.stringify(pinned));
    }
    const changed = pinned.checkpoint_key !== served.checkpoint_key || (pinned.receipt_key && pinned.receipt_key !== served.receipt_key);
    return { keys: { checkpoint_key: pinned.checkpoint_key, receipt_key: pinned.receipt_key || served.receipt_key }, served, changed: !!changed, firstUse: !!pinned.firstUse };
  }
  function pinKeys(checkpointKey, receiptKey) {
    localStorage.setItem(PINNED, JSON.stringify({ checkpoint_key: checkpointKey, receipt_key: receiptKey }));
  }

  // A checkpoint note's text: origin, size, root hash, then signatures.
  function noteText(n) { return new TextDecoder().decode(typeof n === 'string' ? unb64(n) : n); }
  function noteSize(n) { return Number(noteText(n).split('\n')[1]); }
  // noteTree is the signed body of a note (origin, size, hash): two notes
  // of the same tree may differ only by their signatures.
  function noteTree(n) { const s = noteText(n), i = s.indexOf('\n\n'); return i < 0 ? s : s.slice(0, i + 1); }
  // rollback is the failed series report when the server now serves a
  // checkpoint older than one this browser verified before (seen is its
  // size, now the size served): smaller, or as large with another tree,
  // or a size the server says it has not reached.
  function rollback(seen, now, why) {
    const problem = t('log.' + why, { seen, now });
    return { ok: false, inconsistent: true, rollback: why, seen, now, problems: [problem], checkpoints: [] };
  }
  // rollbackOf compares the note served now with the largest note this
  // browser verified before, and returns the rollback report, or null.
  function rollbackOf(largest, note) {
    const seen = noteSize(largest), now = noteSize(note);
    if (now < seen) return rollback(seen, now, 'rollback');
    if (now === seen && noteTree(largest) !== noteTree(note)) return rollback(seen, now, 'fork');
    return null;
  }
  // errorInfo is the google.rpc.ErrorInfo detail of the API's answer e
  // with this reason (api/server/errors.go), or null: the portal acts on
  // reasons, never on the English text of the message.
  function errorInfo(e, reason) {
    const details = e instanceof ApiError && e.body && Array.isArray(e.body.details) ? e.body.details : [];
    return details.find(d => d && d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo' && d.reason === reason) || null;
  }
  // beyondCheckpoint tells the API's answer that a size is past the
  // server's latest signed checkpoint.
  function beyondCheckpoint(e) { return errorInfo(e, 'BEYOND_CHECKPOINT') !== null; }

  // checkLogGrowth checks that the checkpoint just verified is consistent
  // with the largest one this browser verified before (the log only grew),
  // then remembers it. A smaller checkpoint, or another tree of the same
  // size, is a rollback or a fork: reported, never accepted, and the
  // larger one stays remembered. It returns null when there is nothing to
  // compare.
  async function checkLogGrowth(keys, note) {
    let last = null;
    try { last = JSON.parse(localStorage.getItem(LAST_CP)); } catch (e) { last = null; }
    note = b64(note);
    if (!last || !last.note) { localStorage.setItem(LAST_CP, JSON.stringify({ note })); return null; }
    const back = rollbackOf(last.note, note);
    if (back) return back;
    const seen = noteSize(last.note), now = noteSize(note);
    let proof = [];
    if (seen > 0 && seen < now) {
      try {
        proof = (await api('GET', '/v1/log/consistency?first=' + seen + '&second=' + now)).hashes;
      } catch (e) {
        if (beyondCheckpoint(e)) return rollback(seen, now, 'beyond');
        throw e;
      }
    }
    const rep = await verify('series', { keys, notes: [last.note, note], proofs: [proof] });
    if (rep.ok) localStorage.setItem(LAST_CP, JSON.stringify({ note }));
    return rep;
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
  function fmtMonth(d) {
    return new Intl.DateTimeFormat(lang === 'fr' ? 'fr-FR' : 'en-GB', { month: 'short', year: '2-digit', timeZone: 'UTC' }).format(d);
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

  document.addEventListener('DOMContentLoaded', () => { renderHeader(); applyI18n(); });

  return {
    t, get lang() { return lang; }, applyI18n, session, startSession, signOut, takeSignInMessage, expired, requireSession, homeOf, claims,
    api, allPages, pool, ApiError, verify, verifier, logKeys, pinKeys, checkLogGrowth, noteSize, rollbackOf, rollback, errorInfo, beyondCheckpoint, b64, unb64, el, svg, fmtTime, fmtMonth, status, fieldError,
  };
})();
