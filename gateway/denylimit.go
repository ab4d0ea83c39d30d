package gateway

import (
	"sync"
	"time"
)

// unknownSourceBudget bounds the flow.deny records a LAN UDP listener
// writes for datagrams from sources no identity holds: a flood of forged
// or random sources must not become a flood of audit lines. Within each
// interval the first unknownSourceBudget are logged one by one; the rest
// are counted, and the count is logged once the interval is over.
const (
	unknownSourceBudget   = 20
	unknownSourceInterval = 10 * time.Second
)

// denyLimiter is that budget for one listener.
type denyLimiter struct {
	mu         sync.Mutex
	start      time.Time // of the current interval
	logged     int
	suppressed int
}

// allow reports whether a denial at now may be logged on its own line, and
// how many denials of the interval before were suppressed (to be logged
// as one count when it is not zero).
func (l *denyLimiter) allow(now time.Time) (ok bool, suppressedBefore int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= unknownSourceInterval {
		suppressedBefore = l.suppressed
		l.start, l.logged, l.suppressed = now, 0, 0
	}
	if l.logged < unknownSourceBudget {
		l.logged++
		return true, suppressedBefore
	}
	l.suppressed++
	return false, suppressedBefore
}
