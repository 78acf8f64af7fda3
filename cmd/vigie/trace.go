package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vigie-sante/vigie/api/auth"
)

// traceConfig is what tracing is configured with (flags of serve).
// Tracing is off unless an exporter is named.
type traceConfig struct {
	otlp string // host:port of an OTLP/gRPC collector
	file string // a file of spans, one JSON object each
}

func (c *traceConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.otlp, "trace-otlp", "", "OpenTelemetry: send spans (one per call and its ledger work; never an INS, a document or a body) to this OTLP/gRPC collector, host:port (TLS, but on a loopback host)")
	fs.StringVar(&c.file, "trace-file", "", "OpenTelemetry: append the spans to this file, one JSON object each (for trying tracing out)")
}

// startTracing sets OpenTelemetry's global tracer provider, which the
// gRPC server and the ledger use, when an exporter is configured. The
// returned function flushes the spans and stops the exporters, within
// 10 seconds (a collector that does not answer must not hold a shutdown).
func startTracing(ctx context.Context, c traceConfig) (shutdown func(context.Context) error, err error) {
	if c.otlp == "" && c.file == "" {
		return func(context.Context) error { return nil }, nil
	}
	var opts []sdktrace.TracerProviderOption
	var closers []func() error
	defer func() {
		if err != nil {
			for _, f := range closers {
				f()
			}
		}
	}()
	if c.file != "" {
		f, err := os.OpenFile(filepath.Clean(c.file), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--trace-file: %w", err)
		}
		closers = append(closers, f.Close)
		exp, err := stdouttrace.New(stdouttrace.WithWriter(f))
		if err != nil {
			return nil, fmt.Errorf("--trace-file: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if c.otlp != "" {
		// TLS, but to a collector on this machine (auth's rule).
		loopback := auth.LoopbackAddr(c.otlp)
		if loopback != nil && !errors.Is(loopback, auth.ErrNotLoopback) {
			return nil, fmt.Errorf("--trace-otlp: %w", loopback)
		}
		eo := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.otlp)}
		if loopback == nil {
			eo = append(eo, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("--trace-otlp: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	res := resource.NewSchemaless(attribute.String("service.name", "vigie"), attribute.String("service.version", versionString()))
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithResource(res))...)
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := tp.Shutdown(ctx)
		for _, f := range closers {
			err = errors.Join(err, f())
		}
		return err
	}, nil
}
