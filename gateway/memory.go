package gateway

import (
	"log/slog"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Giving memory back after a burst. Go keeps the pages a burst of load
// made it map (a flood's packet buffers, thousands of flows' windows) and
// returns them to the system over minutes, and only once two collections
// have emptied wireguard-go's buffer pools; a gateway that is idle after
// a flood allocates little, so those collections come late. An operator
// watching RSS sees the flood's peak long after it ended. Every trimEvery
// the trimmer checks how much memory the process holds (mapped and not
// yet returned); when it has grown by trimGrowth since the last trim, it
// collects twice (the pools' victims go with the second) and returns
// what is free. The cost is two collections per trimGrowth of growth, at
// most once per trimEvery; memory that stays in use is not trimmed again.
const (
	trimEvery  = 5 * time.Second
	trimGrowth = 64 << 20
)

// trimmer remembers what the process held after its last trim.
type trimmer struct {
	samples []rtmetrics.Sample
	settled uint64
}

func newTrimmer() *trimmer {
	t := &trimmer{samples: []rtmetrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}}
	t.settled = t.held()
	return t
}

// held is the memory the Go runtime has mapped and not returned to the
// system: what RSS follows.
func (t *trimmer) held() uint64 {
	rtmetrics.Read(t.samples)
	return t.samples[0].Value.Uint64() - t.samples[1].Value.Uint64()
}

// check trims when the process grew by trimGrowth since the last trim;
// it returns what was held before and after (equal when it did not trim).
func (t *trimmer) check() (before, after uint64) {
	before = t.held()
	if before <= t.settled+trimGrowth {
		return before, before
	}
	debug.FreeOSMemory()
	debug.FreeOSMemory()
	t.settled = t.held()
	return before, t.settled
}

// The trimmer is the process's, not a gateway's: tests and benchmarks run
// many gateways in one process, and one trimmer serves them all. It runs
// while at least one gateway does.
var trim struct {
	mu    sync.Mutex
	users int
	stop  chan struct{}
	done  chan struct{}
}

// startTrim counts a running gateway, starting the trimmer for the first.
func startTrim(log *slog.Logger) {
	trim.mu.Lock()
	defer trim.mu.Unlock()
	trim.users++
	if trim.users > 1 {
		return
	}
	trim.stop, trim.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := newTrimmer()
		tick := time.NewTicker(trimEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if before, after := t.check(); after < before {
				log.Debug("memory returned to the system", "held_mib", before>>20, "now_mib", after>>20)
			}
		}
	}(trim.stop, trim.done)
}

// stopTrim counts a gateway gone, stopping the trimmer after the last.
func stopTrim() {
	trim.mu.Lock()
	defer trim.mu.Unlock()
	trim.users--
	if trim.users == 0 {
		close(trim.stop)
		<-trim.done
	}
}
