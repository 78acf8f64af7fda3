// Sign-in: through the identity provider when the server has it
// configured (oidc/login; the server hands the token back in the URL's
// fragment, which no server sees), or by pasting a bearer token (the
// embedded issuer's, from `vigie token`, or the provider's). Either way
// the server has checked the token before it is kept, in this tab's
// sessionStorage only. A token in the fragment is taken only from a
// sign-in this tab started (the random value it kept comes back with it).
'use strict';

document.addEventListener('DOMContentLoaded', async () => {
  const { t } = Vigie;
  const TAB = 'vigie.oidc.tab';
  // whoIs asks the server who the token is (signature, issuer, audience,
  // expiry, and the mapping of its issuer's claims): { who } when
  // accepted, else { refused: what the server said }.
  async function whoIs(token) {
    const r = await fetch('api/identity', { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' });
    let body = null; try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (r.ok && body && typeof body.role === 'string') return { who: body };
    return { refused: (body && body.message) || ('HTTP ' + r.status), enrol: !!(body && body.enrol === true) };
  }
  // offerEnrolment asks a patient whose sign-in is linked to no patient
  // yet for the one-time code their hospital gave them, and links it
  // (api/enrol); the token stays in this function until the server
  // accepts it.
  function offerEnrolment(token) {
    const section = document.getElementById('enrol');
    const codeInput = document.getElementById('enrol-code');
    const codeError = document.getElementById('enrol-error');
    section.hidden = false;
    document.getElementById('oidc').hidden = true;
    document.getElementById('paste-title').hidden = true;
    document.getElementById('signin-form').hidden = true;
    document.getElementById('enrol-form').addEventListener('submit', async ev => {
      ev.preventDefault();
      const code = codeInput.value.trim();
      if (!code) { Vigie.fieldError(codeInput, codeError, t('signin.enrol.err.required')); codeInput.focus(); return; }
      let problem = '';
      try {
        const r = await fetch('api/enrol', { method: 'POST', headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify({ code }), cache: 'no-store', credentials: 'omit' });
        let body = null; try { body = await r.json(); } catch (e) { /* not JSON */ }
        if (!r.ok) problem = t('signin.enrol.err.refused', { detail: (body && body.message) || ('HTTP ' + r.status) });
      } catch (e) {
        problem = t('signin.enrol.err.refused', { detail: String(e) });
      }
      if (!problem) {
        const { who, refused } = await whoIs(token);
        if (who && ROLES.includes(who.role)) {
          Vigie.startSession(token, who);
          location.replace(Vigie.homeOf(who.role));
          return;
        }
        problem = t('signin.enrol.err.refused', { detail: refused || who.role });
      }
      Vigie.fieldError(codeInput, codeError, problem);
      codeInput.focus();
    });
    codeInput.focus();
  }
  const form = document.getElementById('signin-form');
  const input = document.getElementById('token');
  const error = document.getElementById('token-error');
  const box = document.getElementById('signin-message');

  const ROLES = ['patient', 'auditor', 'dpo', 'regulator'];
  let msg = Vigie.takeSignInMessage();
  // Back from the identity provider: take the token or the error out of
  // the fragment at once, so that it stays in no history entry.
  const back = new URLSearchParams(location.hash.slice(1));
  const oidcToken = back.get('oidc_token'), oidcError = back.get('oidc_error'), oidcTab = back.get('oidc_tab');
  if (oidcToken !== null || oidcError !== null) history.replaceState(null, '', location.pathname + location.search);
  const started = sessionStorage.getItem(TAB);
  if (oidcToken !== null || oidcError !== null) sessionStorage.removeItem(TAB);
  if (oidcToken) {
    // Only a token from a sign-in this tab started (a link carrying
    // someone else's token would sign the reader in as them), and that
    // the server accepts as the API does.
    const c = Vigie.claims(oidcToken);
    if (!started || oidcTab !== started) {
      msg = { key: 'signin.oidc.err.foreign' };
      box.dataset.oidcError = 'foreign';
    } else if (c && !Vigie.expired(c)) {
      const { who, refused, enrol } = await whoIs(oidcToken);
      if (who && ROLES.includes(who.role)) {
        Vigie.startSession(oidcToken, who);
        location.replace(Vigie.homeOf(who.role));
        return;
      }
      if (enrol) {
        offerEnrolment(oidcToken);
        form.dataset.ready = 'true';
        return;
      }
      msg = { key: 'signin.oidc.err.token', detail: refused || t('signin.err.role', { role: who.role }) };
    } else {
      msg = { key: 'signin.oidc.err.token' };
    }
  } else if (oidcError !== null) {
    const key = 'signin.oidc.err.' + oidcError;
    msg = { key: Object.hasOwn(I18N.fr, key) ? key : 'signin.oidc.err.other' };
    box.dataset.oidcError = oidcError;
  }
  const showMessage = () => {
    if (!msg) return;
    Vigie.status(box, 'warning', t(msg.key), msg.detail ? t('signin.serverSaid', { detail: msg.detail }) : '');
  };
  showMessage();
  document.addEventListener('vigie:lang', showMessage);
  const s = Vigie.session();
  if (!msg && s && !Vigie.expired(s.claims)) { location.replace(Vigie.homeOf(s.role)); return; }

  // Offer the identity provider when the server has one.
  fetch('api/config', { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' })
    .then(r => r.ok ? r.json() : {})
    .then(cfg => {
      if (cfg.oidc !== true) return;
      // One button per provider (professionals' and patients' at once),
      // named after it when there are several. The sign-in carries a
      // random value of this tab, kept here and handed back with the
      // token.
      const first = document.getElementById('oidc-signin');
      const providers = Array.isArray(cfg.providers) && cfg.providers.length > 0 ? cfg.providers : [{}];
      providers.forEach((p, i) => {
        let button = first;
        if (i > 0) {
          button = first.cloneNode(false);
          button.id = 'oidc-signin-' + i;
          first.parentNode.appendChild(document.createTextNode(' '));
          first.parentNode.appendChild(button);
        }
        button.dataset.provider = String(i);
        if (providers.length > 1 && typeof p.name === 'string') {
          delete button.dataset.i18n;
          const label = () => { button.textContent = t('signin.oidc.buttonAt', { name: p.name }); };
          label();
          document.addEventListener('vigie:lang', label);
        }
        button.addEventListener('click', ev => {
          ev.preventDefault();
          const b = crypto.getRandomValues(new Uint8Array(32));
          const tab = btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
          sessionStorage.setItem(TAB, tab);
          location.assign('oidc/login?t=' + tab + '&p=' + i);
        });
      });
      document.getElementById('oidc').hidden = false;
      document.getElementById('paste-title').hidden = false;
    })
    .catch(() => { /* the paste form stays */ });

  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const token = input.value.replace(/\s+/g, '');
    const c = Vigie.claims(token);
    let problem = '';
    if (!token) problem = t('signin.err.required');
    else if (!c) problem = t('signin.err.malformed');
    else if (Vigie.expired(c)) problem = t('signin.expired');
    Vigie.fieldError(input, error, problem);
    if (problem) { input.focus(); return; }
    // The server checks the token (signature, issuer, audience, expiry)
    // and says who it is.
    const { who, refused, enrol } = await whoIs(token);
    if (enrol) { offerEnrolment(token); return; }
    if (refused) problem = t('signin.err.refused', { detail: refused });
    else if (!ROLES.includes(who.role)) problem = t('signin.err.role', { role: who.role });
    if (problem) {
      Vigie.fieldError(input, error, problem);
      input.focus();
      return;
    }
    Vigie.startSession(token, who);
    location.replace(Vigie.homeOf(who.role));
  });
  form.dataset.ready = 'true'; // the form is ours now (tests wait for it)
});
