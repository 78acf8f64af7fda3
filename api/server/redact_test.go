package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
)

// principal is a slog.LogValuer, as auth.Identity is.
type principal string

func (p principal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("role", "service"), slog.String("principal", "service:"+string(p)))
}

// TestRedactingHandler logs INS and quoted input every way the service
// does, and looks for them in the output.
func TestRedactingHandler(t *testing.T) {
	const corsica = "185052A01234579"
	lower := strings.Replace(corsica, "2A", "2a", 1)
	spaced := "1 37 04 76 243 484 15" // testINS
	secrets := []string{testINS, otherINS, corsica, lower, spaced, testINS[:13], "PSYCHIATRY-NOTE-7"}
	n, err := strconv.ParseInt(testINS, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	_, numErr := strconv.ParseInt(otherINS+"0000", 10, 64)

	var buf bytes.Buffer
	log := slog.New(RedactingHandler(slog.NewTextHandler(&buf, nil)))
	log = log.With("request_id", "req-"+lower)
	log.WithGroup("g"+testINS).Info("call for "+spaced,
		slog.Any("caller", principal(testINS)),
		slog.Int64("number", n),
		slog.Any("error", errors.New("match timeout after 250ms on input `document/x/PSYCHIATRY-NOTE-7`")),
		slog.Any("err", fmt.Errorf("page_size: %w", numErr)),
		slog.Group("nested", slog.String("id", "x"+corsica+"y")),
		slog.Any("list", []string{testINS}),
		slog.String("kept", "leaf 12 of 4096"),
	)
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q:\n%s", s, out)
		}
	}
	for _, want := range []string{"caller.principal=service:INS(redacted)", "request_id=req-INS(redacted)", "kept=\"leaf 12 of 4096\"", "on input `…`", `parsing \"…\"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if _, twice := RedactingHandler(RedactingHandler(slog.NewTextHandler(&buf, nil))).(redacting).h.(redacting); twice {
		t.Error("RedactingHandler wraps a redacting handler again")
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct{ in, want string }{
		{`strconv.ParseInt: parsing "` + testINS + `": value out of range`, `strconv.ParseInt: parsing "…": value out of range`},
		{"on input `a\"b`, then", "on input `…`, then"},
		{`escaped "a\"b" end`, `escaped "…" end`},
		{`unclosed "abc`, `unclosed "…"`},
		{"service:" + testINS, "service:INS(redacted)"},
		{"no quotes", "no quotes"},
	}
	for _, tt := range tests {
		if got := ErrorText(tt.in); got != tt.want {
			t.Errorf("ErrorText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
