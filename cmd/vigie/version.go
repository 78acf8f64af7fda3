package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set at build time from git (scripts/version.sh) with
// -ldflags "-X main.version=v1.2.3"; the Makefile does. This machine
// builds with -buildvcs=false, so Go's embedded VCS information is empty.
var version = ""

// versionString is the version a build says it is: the one injected at
// build, else the module version of `go install ...@v1.2.3`, else
// "devel".
func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	printVersion(stdout)
	return exitOK
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "vigie %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildInfo is the vigie_build_info gauge: always 1, its labels say which
// build runs (for dashboards: count the versions of a fleet).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "vigie_build_info",
		Help:        "Always 1; the labels name the build: version (from git at build), go_version, goos, goarch.",
		ConstLabels: prometheus.Labels{"version": versionString(), "go_version": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH},
	})
	g.Set(1)
	return g
}
