package main

import (
	"context"
	"strings"
	"testing"
)

// TestTraceOTLPAddress: --trace-otlp is host:port, refused naming the
// flag otherwise (before any exporter starts).
func TestTraceOTLPAddress(t *testing.T) {
	for _, bad := range []string{"4317", "collector.example", "http://collector.example:4317"} {
		if _, err := startTracing(context.Background(), traceConfig{otlp: bad}); err == nil || !strings.Contains(err.Error(), "--trace-otlp") {
			t.Errorf("--trace-otlp %s: %v, want an error naming --trace-otlp", bad, err)
		}
	}
}
