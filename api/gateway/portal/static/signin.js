// Sign-in: the user pastes a bearer token (the embedded issuer's, from
// `vigie token`, or their identity provider's). It is checked by the
// server before it is kept, in this tab's sessionStorage only.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { t } = Vigie;
  const form = document.getElementById('signin-form');
  const input = document.getElementById('token');
  const error = document.getElementById('token-error');
  const box = document.getElementById('signin-message');

  const msg = Vigie.takeSignInMessage();
  const showMessage = () => {
    if (!msg) return;
    Vigie.status(box, 'warning', t(msg.key), msg.detail ? t('signin.serverSaid', { detail: msg.detail }) : '');
  };
  showMessage();
  document.addEventListener('vigie:lang', showMessage);
  const s = Vigie.session();
  if (!msg && s && !Vigie.expired(s.claims)) { location.replace(Vigie.homeOf(s.role)); return; }

  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const token = input.value.replace(/\s+/g, '');
    const c = Vigie.claims(token);
    let problem = '';
    if (!token) problem = t('signin.err.required');
    else if (!c) problem = t('signin.err.malformed');
    else if (Vigie.expired(c)) problem = t('signin.expired');
    else if (!['patient', 'auditor', 'dpo', 'regulator'].includes(c.role)) problem = t('signin.err.role', { role: c.role });
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
