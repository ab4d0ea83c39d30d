package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// wardgate run sets the runtime's soft memory limit to 90% of the heap
// budget, unless GOMEMLIMIT is set.
func TestSetMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	t.Setenv("GOMEMLIMIT", "")
	setMemoryLimit(1000)
	if got, want := debug.SetMemoryLimit(-1), int64(1000)<<20*9/10; got != want {
		t.Errorf("limit %d, want %d", got, want)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "4GiB")
	setMemoryLimit(1000)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set the limit became %d", got)
	}
}
