package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/vigie-sante/vigie/consent/ident"
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
// as an INS is redacted anyway (RedactingHandler). Outside a call, it does nothing.
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
	return slices.Clone(rl.attrs)
}

// RedactINS replaces every INS in s by its redacted form (see
// ident.RedactINS): a backstop for text that may quote a request.
func RedactINS(s string) string { return ident.RedactINS(s) }
