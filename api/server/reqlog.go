package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/vigie-sante/vigie/api/auth"
)

// requestLog gathers the attributes of a call's one log line.
type requestLog struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

type requestLogKey struct{}

// AddLogAttrs adds attributes to the call's log line (written once, when
// the call ends): a decision, a pseudonym, a leaf index, a count. Never an
// INS, a document, an event body or a justification; a string that reads
// as an INS is redacted anyway. Outside a call, it does nothing.
func AddLogAttrs(ctx context.Context, attrs ...slog.Attr) {
	rl, ok := ctx.Value(requestLogKey{}).(*requestLog)
	if !ok {
		return
	}
	rl.mu.Lock()
	rl.attrs = append(rl.attrs, attrs...)
	rl.mu.Unlock()
}

func (rl *requestLog) take() []slog.Attr {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	out := make([]slog.Attr, len(rl.attrs))
	for i, a := range rl.attrs {
		out[i] = redactAttr(a)
	}
	return out
}

// redactAttr redacts the INS-like strings of an attribute.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactINS(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = redactAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		// Values the handler did not format: print them, then redact.
		return slog.String(a.Key, redactINS(v.String()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// RedactINS replaces every valid INS in s by auth.Redacted: a backstop
// for text that may quote a request (error messages of other libraries).
func RedactINS(s string) string { return redactINS(s) }

// redactINS replaces every 15 characters that make a valid INS (see
// auth.CheckINS) by auth.Redacted: a safety net under the rule that no
// message or log line carries an INS, not a substitute for it.
func redactINS(s string) string {
	var b strings.Builder
	done := 0 // s[:done] is in b (when b is used)
	run := 0  // start of the current run of INS characters
	for i := 0; i <= len(s); i++ {
		if i < len(s) && ('0' <= s[i] && s[i] <= '9' || s[i] == 'A' || s[i] == 'B') {
			continue
		}
		for j := run; j+15 <= i; j++ {
			if _, err := auth.CheckINS(s[j : j+15]); err == nil {
				b.WriteString(s[done:j])
				b.WriteString(auth.Redacted)
				done = j + 15
				j += 14
			}
		}
		run = i + 1
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}
