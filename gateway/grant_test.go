package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/grant"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// TestGrantExpiresOnTheGatewayClock: a grant written by internal/grant
// (as `wardgate grant` does) and reloaded lets bob reach ehr (100.81.0.10,
// the echo backend); when the
// gateway's clock passes its expiry, bob's live flow is reset within about
// a second (flow.revoked, reason expired) and a new one is denied with
// reason expired. The clock is Options.Now, moved by the test.
func TestGrantExpiresOnTheGatewayClock(t *testing.T) {
	be := startTestBackends(t)
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	clock := &fakeClock{}
	granted := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	clock.set(granted)
	dir := t.TempDir()
	tg := startTestGatewayAt(t, memnet.NewSwitch(), keys[0], "leeds", 0, dir, sprintfPolicy(keys[0], keys[1], keys[2], be), "[limits]\ndrain = \"1s\"\n", withClock(clock))
	bob := tg.client(t, keys[2], "100.80.1.11")
	if _, err := dialVIP(bob, "100.81.0.10", be.echo.Port()); err == nil {
		t.Fatal("bob reached ehr before the grant")
	}

	added, err := grant.Add(filepath.Join(dir, "policy.toml"), grant.Request{From: "bob", Service: "ehr", Expires: granted.Add(2 * time.Hour), Reason: "cover"}, clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	held, err := dialVIP(bob, "100.81.0.10", be.echo.Port())
	if err != nil {
		t.Fatalf("bob with the grant: %v", err)
	}
	defer held.Close()
	tg.audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "bob", "service": "ehr", "rule": added.Rule.Name})

	testwait.Until(t, 5*time.Second, "bob's flow registered", func() bool { return countFlows(tg.gw, "bob") == 1 })
	clock.set(granted.Add(2 * time.Hour))
	start := time.Now()
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = held.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("bob's flow outlived the grant: %v", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("revoked %v after the expiry; want within about a second", d)
	}
	tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "bob", "service": "ehr", "reason": "expired", "rule": added.Rule.Name})
	if _, err := dialVIP(bob, "100.81.0.10", be.echo.Port()); err == nil {
		t.Fatal("bob reached ehr after the grant expired")
	}
	tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "bob", "service": "ehr", "reason": "expired", "rule": added.Rule.Name})
}
