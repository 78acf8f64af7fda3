//go:build !unix

package main

import (
	"testing"
	"time"
)

// cpuTime is not measured here: the benchmarks report 0 CPU per leaf.
func cpuTime(testing.TB) time.Duration { return 0 }
