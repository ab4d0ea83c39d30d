// Package testwait is how wardgate's tests wait: for a condition, polled
// until a deadline, or for a value on a channel. One home, so that every
// package's tests wait alike and say what they waited for when they time
// out. It is for tests only.
package testwait

import (
	"runtime"
	"testing"
	"time"
)

// pollEvery is how often Until checks its condition.
const pollEvery = 10 * time.Millisecond

// Until polls cond until it holds, and fails the test when d passes
// first, naming what it waited for.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}

// Recv returns the next value on ch, and fails the test when none comes
// within 10 s, naming what it waited for.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Goroutines waits up to d for the process to have at most n goroutines,
// and fails the test with every goroutine's stack when it keeps more: the
// leak check of code that must end what it starts.
func Goroutines(t testing.TB, d time.Duration, n int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after %v, want at most %d:\n%s", runtime.NumGoroutine(), d, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(pollEvery)
	}
}
