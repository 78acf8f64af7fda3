// Sign-in: through the identity provider when the server has it
// configured (oidc/login; the server hands the token back in the URL's
// fragment, which no server sees), or by pasting a bearer token (the
// embedded issuer's, from `vigie token`, or the provider's). Either way
// the server has checked the token before it is kept, in this tab's
// sessionStorage only.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { t } = Vigie;
  const form = document.getElementById('signin-form');
  const input = document.getElementById('token');
  const error = document.getElementById('token-error');
  const box = document.getElementById('signin-message');

  const ROLES = ['patient', 'auditor', 'dpo', 'regulator'];
  let msg = Vigie.takeSignInMessage();
  // Back from the identity provider: take the token or the error out of
  // the fragment at once, so that it stays in no history entry.
  const back = new URLSearchParams(location.hash.slice(1));
  const oidcToken = back.get('oidc_token'), oidcError = back.get('oidc_error');
  if (oidcToken !== null || oidcError !== null) history.replaceState(null, '', location.pathname + location.search);
  if (oidcToken) {
    // The server verified it as the API does, before handing it over.
    const c = Vigie.claims(oidcToken);
    if (c && !Vigie.expired(c) && ROLES.includes(c.role)) {
      Vigie.startSession(oidcToken);
      location.replace(Vigie.homeOf(c.role));
      return;
    }
    msg = { key: 'signin.oidc.err.token' };
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
    else if (!ROLES.includes(c.role)) problem = t('signin.err.role', { role: c.role });
    Vigie.fieldError(input, error, problem);
    if (problem) { input.focus(); return; }
    // The server checks the token: signature, issuer, audience, expiry.
    const path = c.role === 'patient' ? '/v1/me/consent' : '/v1/log/key';
    const r = await fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' });
    if (!r.ok) {
      let detail = ''; try { detail = (await r.json()).message; } catch (e) { /* not JSON */ }
      Vigie.fieldError(input, error, t('signin.err.refused', { detail: detail || ('HTTP ' + r.status) }));
      input.focus();
      return;
    }
    Vigie.startSession(token);
    location.replace(Vigie.homeOf(c.role));
  });
});
