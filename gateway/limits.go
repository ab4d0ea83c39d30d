package gateway

import (
	"sync"
)

// identityLimits counts, per identity, live flows and TCP flows still being
// set up, so that one identity (a compromised desktop scanning the network)
// cannot starve the others. Counters are keyed by identity name, so they
// survive a reload that renumbers identities.
type identityLimits struct {
	maxFlows, maxPending int

	mu sync.Mutex
	m  map[string]*identityCount
	// refusedFlows and refusedPending count refusals since start (metrics).
	refusedFlows, refusedPending uint64
}

type identityCount struct{ flows, pending int }

func newIdentityLimits(maxFlows, maxPending int) *identityLimits {
	return &identityLimits{maxFlows: maxFlows, maxPending: maxPending, m: make(map[string]*identityCount)}
}

// limitReason names which cap refused a flow; it is the audit reason.
type limitReason string

const (
	limitNone    limitReason = ""
	limitFlows   limitReason = "flow-limit"
	limitPending limitReason = "pending-limit"
)

// acquire takes a flow slot and, when pending, a set-up slot for identity.
// It returns limitNone on success; the caller then owns one release of the
// flow slot (releaseFlow) and, when pending, one of the set-up slot
// (releasePending).
func (l *identityLimits) acquire(identity string, pending bool) limitReason {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.m[identity]
	if c == nil {
		c = &identityCount{}
		l.m[identity] = c
	}
	if c.flows >= l.maxFlows {
		l.refusedFlows++
		return limitFlows
	}
	if pending && c.pending >= l.maxPending {
		l.refusedPending++
		return limitPending
	}
	c.flows++
	if pending {
		c.pending++
	}
	return limitNone
}

func (l *identityLimits) releasePending(identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.m[identity]; c != nil {
		c.pending--
	}
}

func (l *identityLimits) releaseFlow(identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.m[identity]
	if c == nil {
		return
	}
	c.flows--
	if c.flows <= 0 && c.pending <= 0 {
		delete(l.m, identity)
	}
}

// refusals counts the flows each cap has refused since start.
func (l *identityLimits) refusals() (flows, pending uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refusedFlows, l.refusedPending
}
