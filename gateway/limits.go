package gateway

import (
	"sync"
)

// flowLimits counts live flows and TCP flows still being set up, per
// identity and for the whole gateway. Per identity, so that one identity (a
// compromised desktop scanning the network) cannot starve the others; for
// the gateway, so that many identities together cannot run the process out
// of descriptors or memory: every flow this gateway terminates holds a
// host socket, a UDP flow for as long as it idles. New flows over a cap are
// refused cleanly (reset, port unreachable, flow.deny with the cap as the
// reason); live ones are untouched. Counters are keyed by identity name, so
// they survive a reload that renumbers identities.
type flowLimits struct {
	caps limitCaps

	mu       sync.Mutex
	m        map[string]*identityCount
	flows    int // live flows, all identities
	udpFlows int // of which UDP flows this gateway terminates
	// refused counts refusals since start, by cap (metrics).
	refused map[limitReason]uint64
}

// limitCaps are the caps of [limits].
type limitCaps struct {
	flowsPerIdentity, pendingPerIdentity int
	flowsTotal, udpFlowsTotal            int
}

type identityCount struct{ flows, pending int }

func newFlowLimits(c limitCaps) *flowLimits {
	return &flowLimits{caps: c, m: make(map[string]*identityCount), refused: make(map[limitReason]uint64)}
}

// limitReason names which cap refused a flow; it is the audit reason.
type limitReason string

const (
	limitNone     limitReason = ""
	limitFlows    limitReason = "flow-limit"
	limitPending  limitReason = "pending-limit"
	limitTotal    limitReason = "gateway-flow-limit"
	limitUDPTotal limitReason = "gateway-udp-limit"
)

// limitReasons are every cap, in the order metrics list them.
var limitReasons = []limitReason{limitFlows, limitPending, limitTotal, limitUDPTotal}

// flowKind says what a flow holds, for the caps.
type flowKind uint8

const (
	kindTCP     flowKind = iota // terminated here: counts as pending until set up
	kindUDP                     // terminated here: a host socket while it idles
	kindRelayed                 // relayed to another site as packets: a table entry
)

// acquire takes a flow slot for identity and, for TCP, a set-up slot. It
// returns limitNone on success; the caller then owns one release of the
// flow (releaseFlow, with the same kind) and, for TCP, one of the set-up
// slot (releasePending).
func (l *flowLimits) acquire(identity string, k flowKind) limitReason {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.m[identity]
	if c == nil {
		c = &identityCount{}
		l.m[identity] = c
	}
	reason := limitNone
	switch {
	case c.flows >= l.caps.flowsPerIdentity:
		reason = limitFlows
	case k == kindTCP && c.pending >= l.caps.pendingPerIdentity:
		reason = limitPending
	case l.flows >= l.caps.flowsTotal:
		reason = limitTotal
	case k == kindUDP && l.udpFlows >= l.caps.udpFlowsTotal:
		reason = limitUDPTotal
	}
	if reason != limitNone {
		l.refused[reason]++
		if c.flows == 0 && c.pending == 0 {
			delete(l.m, identity)
		}
		return reason
	}
	c.flows++
	l.flows++
	switch k {
	case kindTCP:
		c.pending++
	case kindUDP:
		l.udpFlows++
	}
	return limitNone
}

func (l *flowLimits) releasePending(identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.m[identity]; c != nil {
		c.pending--
	}
}

func (l *flowLimits) releaseFlow(identity string, k flowKind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flows--
	if k == kindUDP {
		l.udpFlows--
	}
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
func (l *flowLimits) refusals() map[limitReason]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[limitReason]uint64, len(l.refused))
	for r, n := range l.refused {
		out[r] = n
	}
	return out
}
