// Package testwait is how wardgate's tests wait: for a condition, polled
// until a deadline, or for a value on a channel. One home, so that every
// package's tests wait alike and say what they waited for when they time
// out. It is for tests only.
package testwait

import (
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
