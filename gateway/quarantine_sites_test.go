package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// newQuarantineMesh is newSitesMesh with ehr at York and greeter kept
// reachable in quarantine.
func newQuarantineMesh(t *testing.T) (*mesh, *wgclient.Client) {
	m := &mesh{t: t, sw: memnet.NewSwitch(), be: startTestBackends(t), gws: map[string]*testGateway{},
		keys:     map[string]testKey{"leeds": newTestKey(t), "york": newTestKey(t), "hull": newTestKey(t)},
		aliceKey: newTestKey(t), carolKy: newTestKey(t), ehrSite: "york", lanPort: freeTCPPort(t),
		extra: "\n[quarantine]\nallow = [\"greeter\"]\n"}
	for _, s := range []string{"leeds", "york", "hull"} {
		m.start(s, t.TempDir())
	}
	alice := m.gws["leeds"].client(t, m.aliceKey, "100.80.1.10")
	for _, s := range []string{"york", "hull"} {
		testwait.Until(t, 10*time.Second, "site link leeds->"+s, func() bool { return linkHealthy(m.gws["leeds"].gw, s) })
	}
	testwait.Until(t, 10*time.Second, "site link york->leeds", func() bool { return linkHealthy(m.gws["york"].gw, "leeds") })
	return m, alice
}

// holdRelayed opens alice's flow to ehr at York, relayed by Leeds, and
// waits until both ends have it.
func (m *mesh) holdRelayed(alice *wgclient.Client) net.Conn {
	m.t.Helper()
	c, err := dialVIP(alice, m.vip("ehr"), m.be.echo.Port())
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	testwait.Until(m.t, 5*time.Second, "the relayed flow at both ends", func() bool {
		return countFlows(m.gws["leeds"].gw, "alice") == 1 && countFlows(m.gws["york"].gw, "alice") == 1
	})
	return c
}

// expectReset waits up to a second for c to be cut off.
func expectReset(t *testing.T, c net.Conn) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the flow outlived the quarantine: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("flow cut %v after the quarantine; want within a second", d)
	}
}

func learnt(g *Gateway, identity string) bool { return g.quar.has(identity) }

// TestQuarantineAcrossSites: a quarantine issued at the identity's home
// ends its relayed flow at both ends and reaches the serving site over the
// site link; one issued at the serving site is enforced there on its own,
// at once; a site that was down when it was issued learns it when its
// link comes back; a release travels the same way.
func TestQuarantineAcrossSites(t *testing.T) {
	t.Run("issued at home: the relayed flow ends at both ends", func(t *testing.T) {
		m, alice := newQuarantineMesh(t)
		held := m.holdRelayed(alice)
		if _, _, err := m.gws["leeds"].gw.Quarantine("alice", "EDR alert 4711", "tester"); err != nil {
			t.Fatal(err)
		}
		expectReset(t, held)
		m.gws["leeds"].audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "reason": "quarantined"})
		testwait.Until(t, 10*time.Second, "york to learn the quarantine", func() bool { return learnt(m.gws["york"].gw, "alice") })
		// York learns it over a site link: Leeds's, or Hull's when Hull
		// learnt it first (records travel between every pair of sites).
		ev := m.gws["york"].audit.waitEvent(t, map[string]any{"event": "identity.quarantine", "identity": "alice"})
		if from := ev["from_site"]; (from != "leeds" && from != "hull") || ev["site"] != "leeds" || ev["reason"] != "EDR alert 4711" {
			t.Errorf("york's identity.quarantine: %v", ev)
		}
		testwait.Until(t, 5*time.Second, "york's end of the flow", func() bool { return countFlows(m.gws["york"].gw, "alice") == 0 })
		testwait.Until(t, 10*time.Second, "hull to learn the quarantine", func() bool { return learnt(m.gws["hull"].gw, "alice") })

		// greeter, at York, stays reachable: relayed and decided at both ends.
		if got, err := greet(alice, m.vip("greeter"), m.be.other.Port()); err != nil || got != "other" {
			t.Errorf("greeter in quarantine: %q %v", got, err)
		}
		if err := m.echoOnce(alice); err == nil {
			t.Error("a new relayed flow to ehr went through")
		}
		if _, err := m.gws["leeds"].gw.Release("alice", "clean", "tester"); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, 10*time.Second, "york to learn the release", func() bool { return !learnt(m.gws["york"].gw, "alice") })
		if ev := m.gws["york"].audit.waitEvent(t, map[string]any{"event": "identity.release", "identity": "alice"}); ev["from_site"] != "leeds" && ev["from_site"] != "hull" {
			t.Errorf("york's identity.release: %v", ev)
		}
		if err := m.echoOnce(alice); err != nil {
			t.Errorf("after release: %v", err)
		}
	})

	t.Run("issued at the serving site: enforced there on its own", func(t *testing.T) {
		m, alice := newQuarantineMesh(t)
		held := m.holdRelayed(alice)
		if _, _, err := m.gws["york"].gw.Quarantine("alice", "worm seen at york", "tester"); err != nil {
			t.Fatal(err)
		}
		// York revoked its end before Quarantine returned: no word from
		// Leeds was needed.
		ev := m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "from_site": "leeds"})
		if ev["reason"] != "quarantined" {
			t.Errorf("york's flow.revoked: %v", ev)
		}
		expectReset(t, held)
		if err := m.echoOnce(alice); err == nil {
			t.Error("a new relayed flow went through")
		}
		testwait.Until(t, 10*time.Second, "leeds to learn the quarantine", func() bool { return learnt(m.gws["leeds"].gw, "alice") })
		q := m.gws["leeds"].gw.Quarantines()
		if len(q) != 1 || q[0].Site != "york" || q[0].Reason != "worm seen at york" {
			t.Errorf("leeds's record: %+v", q)
		}
	})

	t.Run("a LAN identity is quarantined at its site's listener", func(t *testing.T) {
		m, _ := newQuarantineMesh(t)
		lan := "127.0.0.1:" + strconv.Itoa(m.lanPort)
		readLAN := func() (string, error) {
			c, err := net.DialTimeout("tcp4", lan, 5*time.Second)
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			return string(got), err
		}
		if got, err := readLAN(); got != "other" {
			t.Fatalf("mri-3 before the quarantine: %q %v", got, err)
		}
		if _, _, err := m.gws["leeds"].gw.Quarantine("mri-3", "EDR alert 99", "tester"); err != nil {
			t.Fatal(err)
		}
		// greeter is kept in quarantine: mri-3 reaches it still, relayed.
		if got, err := readLAN(); got != "other" {
			t.Errorf("mri-3 to greeter, in quarantine: %q %v", got, err)
		}
		m.extra = "\n[quarantine]\nallow = []\n"
		m.rewrite("leeds")
		if got, _ := readLAN(); got != "" {
			t.Errorf("mri-3 got %q through the listener in quarantine", got)
		}
		m.gws["leeds"].audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "mri-3", "reason": "quarantined"})
	})

	t.Run("a site down when it was issued learns it when it comes back", func(t *testing.T) {
		m, alice := newQuarantineMesh(t)
		yorkDir := m.gws["york"].dir
		m.gws["york"].gw.Close()
		if _, _, err := m.gws["leeds"].gw.Quarantine("alice", "EDR alert 4711", "tester"); err != nil {
			t.Fatal(err)
		}
		york := m.start("york", yorkDir)
		testwait.Until(t, 20*time.Second, "york to learn the quarantine", func() bool { return learnt(york.gw, "alice") })
		testwait.Until(t, 20*time.Second, "leeds to see york back", func() bool { return linkHealthy(m.gws["leeds"].gw, "york") })
		if err := m.echoOnce(alice); err == nil {
			t.Error("a relayed flow went through after york came back")
		}
		// And York keeps it across its own restart, without Leeds.
		york.gw.Close()
		m.gws["leeds"].gw.Close()
		york = m.start("york", yorkDir)
		if !learnt(york.gw, "alice") {
			t.Error("york forgot the learnt quarantine across a restart")
		}
	})
}
