package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
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
