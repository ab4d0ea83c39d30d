package gateway

import (
	"sync"
	"time"
)

// Repetitive denials are logged as counts. A LAN UDP listener getting
// datagrams from sources no identity holds, or one identity's flood of new
// flows over a cap (every datagram from a new source port is a new UDP
// flow), must not become a flood of audit lines, each one work for the
// gateway. Within each interval the first unknownSourceBudget denials are
// logged one by one; the rest are counted, and the count is logged once
// the interval is over (flow.deny with suppressed = N).
const (
	unknownSourceBudget   = 20
	unknownSourceInterval = 10 * time.Second
)

// denyLimiter is that budget for one listener, or one identity's cap.
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

// capDenials keeps a denyLimiter per identity and cap.
type capDenials struct {
	mu sync.Mutex
	m  map[string]*denyLimiter
}

// logCapped writes the flow.deny of v refused by cap, or counts it.
func (g *Gateway) logCapped(v verdict, cap limitReason) {
	key := v.id.Name + "\x00" + string(cap)
	g.capped.mu.Lock()
	if g.capped.m == nil || len(g.capped.m) > 4096 {
		g.capped.m = make(map[string]*denyLimiter)
	}
	l := g.capped.m[key]
	if l == nil {
		l = &denyLimiter{}
		g.capped.m[key] = l
	}
	g.capped.mu.Unlock()
	ok, suppressed := l.allow(time.Now())
	if suppressed > 0 {
		g.logSuppressedDenials(v, string(cap), suppressed)
	}
	if ok {
		g.logDecision(v, nil, string(cap))
	} else {
		g.metrics.observe(v, EventFlowDeny, v.took)
	}
}
