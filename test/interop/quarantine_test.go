package interop

import (
	"bufio"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// slowFlow is a live relayed flow: alice's curl of York's /slow, through
// Leeds, trickling a line every 100 ms.
type slowFlow struct {
	ended  chan error
	stderr *strings.Builder
	// communityID names the flow in both gateways' audit logs.
	communityID any
}

func (p *sitePair) startSlowFlow(t *testing.T) *slowFlow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	curl := p.alice.cmd(ctx, "curl", "-sS", "-N", "--max-time", "60", p.records+"slow")
	stdout, _ := curl.StdoutPipe()
	f := &slowFlow{ended: make(chan error, 1), stderr: &strings.Builder{}}
	curl.Stderr = f.stderr
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("no first line from /slow: %s", f.stderr)
	}
	go func() {
		for sc.Scan() {
		}
		f.ended <- curl.Wait()
	}()
	there := p.york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"})
	f.communityID = there["community_id"]
	return f
}

// endsWithin fails unless the flow's curl ends with an error within d.
func (f *slowFlow) endsWithin(t *testing.T, d time.Duration, after time.Time) {
	t.Helper()
	select {
	case err := <-f.ended:
		t.Logf("curl ended %v after the quarantine: %v: %s", time.Since(after).Round(time.Millisecond), err, strings.TrimSpace(f.stderr.String()))
		if err == nil {
			t.Error("curl of /slow ended cleanly, want an error")
		}
	case <-time.After(d):
		t.Fatalf("the client's connection outlived the quarantine by %v", d)
	}
}

// quarantineCLI runs `wardgate quarantine` (or release, list) against g's
// admin socket; it must succeed.
func quarantineCLI(t *testing.T, g *gatewayProc, args ...string) string {
	t.Helper()
	conf := filepath.Join(g.dir, "gateway.toml")
	full := append([]string{args[0], "-c", conf}, args[1:]...)
	if args[0] == "quarantine" && len(args) > 1 && args[1] == "list" {
		full = []string{"quarantine", "list", "-c", conf}
	}
	code, out, stderr := wardgateCLI(t, full...)
	if code != 0 {
		t.Fatalf("wardgate %v: exit %d: %s%s", full, code, out, stderr)
	}
	return out
}

// TestQuarantineInterop: two `wardgate run` processes and alice's
// wireguard-go client homed at Leeds, reaching York's records. A
// quarantine issued at either gateway cuts her relayed flow at once and
// refuses new ones; the serving gateway enforces it on its own; a gateway
// that was down learns it over the site link, and keeps it across its own
// restart.
func TestQuarantineInterop(t *testing.T) {
	requireInterop(t, "curl")

	t.Run("quarantine at home stops a relayed flow at both ends", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		f := p.startSlowFlow(t)
		start := time.Now()
		out := quarantineCLI(t, p.leeds, "quarantine", "alice", "--reason", "EDR alert 4711")
		if !strings.Contains(out, "quarantined alice") {
			t.Errorf("quarantine: %q", out)
		}
		f.endsWithin(t, time.Second, start)
		flow := map[string]any{"community_id": f.communityID}
		if ev := p.leeds.waitEvent(t, withEvent(flow, "flow.revoked")); ev["reason"] != "quarantined" {
			t.Errorf("Leeds's flow.revoked: %v", ev)
		}
		p.york.waitEvent(t, withEvent(flow, "flow.end"))
		ev := p.york.waitEvent(t, map[string]any{"event": "identity.quarantine", "identity": "alice"})
		if ev["from_site"] != "leeds" || ev["reason"] != "EDR alert 4711" || !strings.HasPrefix(ev["by"].(string), "uid ") {
			t.Errorf("York's identity.quarantine: %v", ev)
		}
		curlFailsFast(t, p.alice.netns, p.records)
		p.leeds.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "reason": "quarantined"})
		if out := quarantineCLI(t, p.york, "quarantine", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "EDR alert 4711") {
			t.Errorf("York's quarantine list:\n%s", out)
		}
	})

	t.Run("the serving gateway refuses a relayed flow on its own", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		f := p.startSlowFlow(t)
		start := time.Now()
		quarantineCLI(t, p.york, "quarantine", "alice", "--reason", "worm seen at york")
		// York revoked its side before the command returned: it needed no
		// word from Leeds, which relays the flow.
		flow := map[string]any{"community_id": f.communityID}
		revoked := p.york.find(t, withEvent(flow, "flow.revoked"))
		if len(revoked) != 1 || revoked[0]["reason"] != "quarantined" || revoked[0]["from_site"] != "leeds" {
			t.Errorf("York's flow.revoked when the command returned: %v", revoked)
		}
		f.endsWithin(t, time.Second, start)
		curlFailsFast(t, p.alice.netns, p.records)
		denied := func(g *gatewayProc) int {
			return len(g.find(t, map[string]any{"event": "flow.deny", "identity": "alice", "reason": "quarantined"}))
		}
		testwait.Until(t, 5*time.Second, "a quarantined flow.deny", func() bool { return denied(p.york)+denied(p.leeds) > 0 })
		t.Logf("the new flow was refused at york %d times, at leeds %d times", denied(p.york), denied(p.leeds))
		// Leeds learns it too, and refuses to relay from then on.
		p.leeds.waitEvent(t, map[string]any{"event": "identity.quarantine", "identity": "alice", "from_site": "york"})
	})

	t.Run("a serving gateway restarted during the quarantine learns it", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		p.york.stop(t)
		quarantineCLI(t, p.leeds, "quarantine", "alice", "--reason", "EDR alert 4711")
		p.york = startGateway(t, p.york.dir, p.york.port)
		ev := p.york.waitEvent(t, map[string]any{"event": "identity.quarantine", "identity": "alice"})
		if ev["from_site"] != "leeds" {
			t.Errorf("York's identity.quarantine: %v", ev)
		}
		testwait.Until(t, 10*time.Second, "York's link to Leeds up", func() bool { return strings.Contains(p.york.output(), "site link up") })
		curlFailsFast(t, p.alice.netns, p.records)
		p.leeds.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "reason": "quarantined"})

		// Restarted again, York has it from its own state before any
		// site link is up.
		p.york.stop(t)
		p.york = startGateway(t, p.york.dir, p.york.port)
		if out := quarantineCLI(t, p.york, "quarantine", "list"); !strings.Contains(out, "alice") {
			t.Errorf("York's quarantine list right after its restart:\n%s", out)
		}

		// Release at Leeds restores alice everywhere.
		quarantineCLI(t, p.leeds, "release", "alice", "--reason", "reimaged")
		testwait.Until(t, 10*time.Second, "York to learn the release", func() bool {
			return len(p.york.find(t, map[string]any{"event": "identity.release", "identity": "alice", "from_site": "leeds"})) > 0
		})
		if out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records); err != nil || out != "hello from york\n" {
			t.Errorf("curl records after the release: %v: %q", err, out)
		}
	})
}
