// Vigie portal: how a page shows text that comes from the ledger or the
// server (names, comments, justifications, labels, messages). Pages put
// text in the document as text (textContent, text nodes), never as HTML;
// and a text recorded before the free-text rule, or sent by a hostile
// server, must not reorder or disguise what it is shown with either. The
// characters of consent.UnsafeRune are shown as consent.EscapeText writes
// them (a test compares the two).
'use strict';

const VigieText = (() => {
  const named = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r' };
  const unsafe = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
  function escape(s) {
    return String(s).replace(unsafe, c => {
      const n = c.charCodeAt(0);
      if (named[n]) return named[n];
      if (n < 0x80) return '\\x' + n.toString(16).padStart(2, '0');
      return '\\u' + n.toString(16).padStart(4, '0');
    });
  }
  return { escape };
})();

if (typeof module === 'object') module.exports = VigieText;
