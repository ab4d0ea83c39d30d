package gateway

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
	"testing/synctest"
)

// TestTrimRefcount: the process's one trimmer runs while any gateway
// does, and a second gateway neither starts another nor stops the first's.
func TestTrimRefcount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		startTrim(log)
		first := trim.done
		startTrim(log)
		if trim.done != first {
			t.Fatal("a second gateway started a second trimmer")
		}
		stopTrim()
		select {
		case <-first:
			t.Fatal("the trimmer stopped while a gateway still runs")
		default:
		}
		stopTrim()
		select {
		case <-first:
		default:
			t.Fatal("the trimmer still runs after the last gateway stopped")
		}
	})
}

// TestTrimReturnsMemory: memory a burst mapped and then let go goes back
// to the system at the next check, and a check without growth does
// nothing.
func TestTrimReturnsMemory(t *testing.T) {
	// Start from nothing free, so that the burst must map new memory
	// (earlier tests of the package leave free pages behind).
	debug.FreeOSMemory()
	tr := newTrimmer()
	if before, after := tr.check(); before != after {
		t.Fatalf("a check without growth trimmed (%d -> %d MiB)", before>>20, after>>20)
	}
	burst := make([][]byte, 0, 256)
	for range 256 {
		b := make([]byte, 1<<20)
		b[0] = 1
		burst = append(burst, b)
	}
	if len(burst) != 256 {
		t.Fatal("burst lost")
	}
	burst = nil
	before, after := tr.check()
	if after > before || before-after < 200<<20 {
		t.Fatalf("the burst was not returned: held %d MiB, %d MiB after the check", before>>20, after>>20)
	}
	t.Logf("held %d MiB after the burst, %d MiB after the trim", before>>20, after>>20)
}
