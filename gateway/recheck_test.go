package gateway

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay/memnet"
	"github.com/wardgate/wardgate/policy"
)

// fakeClock is a settable clock for decisions.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time         { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time)        { c.ns.Store(t.UnixNano()) }
func withClock(c *fakeClock) func(*Options) { return func(o *Options) { o.Now = c.now } }

// TestLiveFlowsEndWhenTheirWindowCloses: a flow allowed inside its rule's
// time window, or before its grant expires, is revoked within a second of
// the window closing or the grant expiring, with the policy's reason.
func TestLiveFlowsEndWhenTheirWindowCloses(t *testing.T) {
	monday := time.Date(2026, 11, 30, 19, 59, 0, 0, time.UTC) // a Monday
	for _, tc := range []struct {
		name, rule string
		after      time.Time
		reason     string
	}{
		{"time window", `when = "mon-fri 07:00-20:00 UTC"`, monday.Add(2 * time.Minute), "outside-time-window"},
		{"grant expiry", `expires = "2026-11-30T20:00:00Z"`, monday.Add(2 * time.Minute), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startTestBackends(t)
			keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
			text := strings.Replace(sprintfPolicy(keys[0], keys[1], keys[2], be),
				"to = [\"ehr\", \"dead\", \"echo\"]\n", "to = [\"ehr\", \"dead\", \"echo\"]\n"+tc.rule+"\n", 1)
			clock := &fakeClock{}
			clock.set(monday)
			tg := startTestGatewayAt(t, memnet.NewSwitch(), keys[0], "leeds", 0, t.TempDir(), text, "[limits]\ndrain = \"1s\"\n", withClock(clock))
			alice := tg.client(t, keys[1], "100.80.1.10")
			held, err := dialVIP(alice, "100.81.0.10", be.echo.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			testwait.Until(t, 5*time.Second, "the held flow", func() bool { return countFlows(tg.gw, "alice") == 1 })

			clock.set(tc.after)
			start := time.Now()
			held.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = held.Read(make([]byte, 1))
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the flow outlived its rule: %v", err)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("revoked after %v; want within about a second", d)
			}
			ev := tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "service": "ehr"})
			if ev["reason"] != tc.reason {
				t.Errorf("flow.revoked reason %v, want %s", ev["reason"], tc.reason)
			}
		})
	}
}

// closeRecorder is a flow connection that records that it was closed.
type closeRecorder struct{ closed chan struct{} }

func (c closeRecorder) Close() error { close(c.closed); return nil }

// TestFlowRegisteredAfterReloadIsCaught: a flow decided with the old
// policy just before a reload's swap, and registered only after the
// reload's own revocation pass, is still ended within about a second.
func TestFlowRegisteredAfterReloadIsCaught(t *testing.T) {
	r := newReloadRig(t)
	g := r.tg.gw
	v := g.classifyOverlay(g.state.Load(), netip.MustParseAddrPort("100.80.1.10:40000"), netip.AddrPortFrom(netip.MustParseAddr("100.81.0.10"), r.be.echo.Port()), policy.ProtoTCP)
	if !v.pass {
		t.Fatal("alice may not reach ehr in the old policy")
	}
	r.write(t, strings.Replace(r.policy(""), `to = ["ehr", "dead", "echo"]`, `to = ["dead", "echo"]`, 1))
	if _, err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	f := g.newFlow(v) // the late registration
	defer g.removeFlow(f)
	c := closeRecorder{closed: make(chan struct{})}
	f.conns.add(c)
	start := time.Now()
	testwait.Recv(t, c.closed, "the late flow's revocation")
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("revoked after %v", d)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "service": "ehr", "reason": "no-rule"})
}
