package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestFlowLimits(t *testing.T) {
	caps := limitCaps{flowsPerIdentity: 3, pendingPerIdentity: 2, flowsTotal: 5, udpFlowsTotal: 2}
	type step struct {
		op       string // "acquire", "release", "setup" (release pending)
		identity string
		kind     flowKind
		want     limitReason
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"per identity, then freed", []step{
			{"acquire", "a", kindRelayed, limitNone}, {"acquire", "a", kindRelayed, limitNone}, {"acquire", "a", kindRelayed, limitNone},
			{"acquire", "a", kindRelayed, limitFlows},
			{"acquire", "b", kindRelayed, limitNone}, // others unaffected
			{"release", "a", kindRelayed, limitNone}, {"acquire", "a", kindRelayed, limitNone},
		}},
		{"set-up slots per identity", []step{
			{"acquire", "a", kindTCP, limitNone}, {"acquire", "a", kindTCP, limitNone},
			{"acquire", "a", kindTCP, limitPending},
			{"acquire", "a", kindUDP, limitNone}, // UDP has no set-up
			{"setup", "a", kindTCP, limitNone}, {"acquire", "a", kindTCP, limitFlows},
		}},
		{"whole gateway", []step{
			{"acquire", "a", kindRelayed, limitNone}, {"acquire", "b", kindRelayed, limitNone}, {"acquire", "c", kindRelayed, limitNone},
			{"acquire", "d", kindRelayed, limitNone}, {"acquire", "e", kindRelayed, limitNone},
			{"acquire", "f", kindRelayed, limitTotal},
			{"release", "c", kindRelayed, limitNone}, {"acquire", "f", kindRelayed, limitNone},
		}},
		{"UDP flows of the whole gateway", []step{
			{"acquire", "a", kindUDP, limitNone}, {"acquire", "b", kindUDP, limitNone},
			{"acquire", "c", kindUDP, limitUDPTotal},
			{"acquire", "c", kindRelayed, limitNone}, // a relayed UDP flow holds no socket
			{"release", "a", kindUDP, limitNone}, {"acquire", "c", kindUDP, limitNone},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFlowLimits(caps)
			refused := 0
			for i, s := range tc.steps {
				switch s.op {
				case "acquire":
					if got := l.acquire(s.identity, s.kind); got != s.want {
						t.Fatalf("step %d: acquire %s: %q, want %q", i, s.identity, got, s.want)
					}
					if s.want != limitNone {
						refused++
					}
				case "release":
					l.releaseFlow(s.identity, s.kind)
				case "setup":
					l.releasePending(s.identity)
				}
			}
			n := 0
			for _, c := range l.refusals() {
				n += int(c)
			}
			if n != refused {
				t.Fatalf("refusals counted %d, want %d", n, refused)
			}
		})
	}
}

// TestFlowLimitsConcurrent: identities taking and giving back slots at
// once never pass a cap, and when every flow has ended nothing is left:
// no count, no per-identity entry.
func TestFlowLimitsConcurrent(t *testing.T) {
	caps := limitCaps{flowsPerIdentity: 4, pendingPerIdentity: 2, flowsTotal: 10, udpFlowsTotal: 3}
	l := newFlowLimits(caps)
	var wg sync.WaitGroup
	var over atomic.Bool
	for i := range 8 {
		id := fmt.Sprintf("id-%d", i%4) // two goroutines per identity
		wg.Go(func() {
			for j := range 500 {
				k := flowKind(j % 3)
				if l.acquire(id, k) != limitNone {
					continue
				}
				l.mu.Lock()
				c := l.m[id]
				if l.flows > caps.flowsTotal || l.udpFlows > caps.udpFlowsTotal ||
					c.flows > caps.flowsPerIdentity || c.pending > caps.pendingPerIdentity {
					over.Store(true)
				}
				l.mu.Unlock()
				if k == kindTCP {
					l.releasePending(id)
				}
				l.releaseFlow(id, k)
			}
		})
	}
	wg.Wait()
	if over.Load() {
		t.Error("a cap was passed")
	}
	if l.flows != 0 || l.udpFlows != 0 || len(l.m) != 0 {
		t.Errorf("after every flow ended: %d flows, %d UDP, %d identities", l.flows, l.udpFlows, len(l.m))
	}
}
