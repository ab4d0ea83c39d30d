package gateway

import (
	"log/slog"
	"sync"
	"testing"
)

// testWriter routes the operational log to t.Logf, so it shows only for
// failing tests. It stops at the test's cleanup: wireguard-go's workers may
// log their exit after the gateway's Close returned, and logging to a
// finished test is a race.
type testWriter struct {
	t testing.TB

	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Helper()
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func slogToTest(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
