package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/vigie-sante/vigie/consent/ident"
)

// RedactingHandler returns a handler that passes every record on to h
// after redacting it: every INS (ident.RedactINS, all the spellings the
// API accepts) in the message and in every attribute, however deep
// (groups, values of slog.LogValuer such as the caller's identity,
// numbers, printed values), and in an attribute whose value is an error,
// everything the error's text quotes. Errors of other packages quote
// their input (strconv's `parsing "…"`, a pattern engine's "on input
// `…`"), and that input may be a patient's document or number: it never
// reaches the log. Every logger of the service goes through one.
func RedactingHandler(h slog.Handler) slog.Handler {
	if r, ok := h.(redacting); ok {
		return r
	}
	return redacting{h}
}

type redacting struct{ h slog.Handler }

func (r redacting) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redacting) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, ident.RedactINS(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redacting) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a)
	}
	return redacting{r.h.WithAttrs(out)}
}

func (r redacting) WithGroup(name string) slog.Handler {
	return redacting{r.h.WithGroup(ident.RedactINS(name))}
}

// redactAttr redacts one attribute (see RedactingHandler).
func redactAttr(a slog.Attr) slog.Attr {
	key := ident.RedactINS(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(key, ident.RedactINS(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = redactAttr(ga)
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(out...)}
	case slog.KindInt64, slog.KindUint64:
		// An INS without Corsica letters is a number too.
		if s := v.String(); len(s) >= 15 {
			if r := ident.RedactINS(s); r != s {
				return slog.String(key, r)
			}
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			return slog.String(key, ErrorText(err.Error()))
		}
		if s := fmt.Sprint(v.Any()); ident.RedactINS(s) != s {
			return slog.String(key, ident.RedactINS(s))
		}
	}
	return slog.Attr{Key: key, Value: v}
}

// ErrorText is an error's text as it may be logged or answered: without
// what it quotes between double quotes or backquotes, nor any INS.
func ErrorText(s string) string {
	return ident.RedactINS(unquote(s))
}

// unquote replaces what s quotes between double quotes (with Go's
// backslash escapes, as %q writes) or backquotes by "…", so that an
// error that quotes its input shows where, not what.
func unquote(s string) string {
	if !strings.ContainsAny(s, "\"`") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '"' && c != '`' {
			b.WriteByte(c)
			continue
		}
		// Find the closing quote; an unclosed one hides the rest.
		j := i + 1
		for ; j < len(s) && s[j] != c; j++ {
			if c == '"' && s[j] == '\\' {
				j++
			}
		}
		b.WriteByte(c)
		b.WriteString("…")
		b.WriteByte(c)
		i = j
	}
	return b.String()
}
