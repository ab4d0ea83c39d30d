package interop

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// lanHost is a namespace joined to the root namespace by a veth pair: a
// legacy device on a site LAN, without WireGuard.
type lanHost struct {
	*netns
	rootAddr string // the gateway host's side
}

// newLANHost makes the namespace and the veth pair: rootAddr/29 on the
// root side, hostAddrs (the first /29, others /32) on the device side.
func newLANHost(t testing.TB, rootAddr string, hostAddrs ...string) *lanHost {
	t.Helper()
	h := &lanHost{netns: newNetns(t), rootAddr: rootAddr}
	root, peer := "vwg"+randHex(3), "vwp"+randHex(3)
	run(t, "ip", "link", "add", root, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", root).Run() })
	run(t, "ip", "link", "set", peer, "netns", h.netns.name)
	run(t, "ip", "addr", "add", rootAddr+"/29", "dev", root)
	run(t, "ip", "link", "set", root, "up")
	for i, a := range hostAddrs {
		plen := "/32"
		if i == 0 {
			plen = "/29"
		}
		run(t, "ip", "-n", h.netns.name, "addr", "add", a+plen, "dev", peer)
	}
	run(t, "ip", "-n", h.netns.name, "link", "set", peer, "up")
	return h
}

// TestSitesInterop: two `wardgate run` processes share one policy; a
// standard WireGuard client at Leeds reaches a service homed at York, and a
// LAN device in its own namespace reaches it through Leeds's listener.
func TestSitesInterop(t *testing.T) {
	requireInterop(t, "curl")
	be := startBackends(t)
	leedsKeys, yorkKeys, alice := newKeypair(t), newKeypair(t), newKeypair(t)
	leedsPort, yorkPort := freeUDPPort(t), freeUDPPort(t)
	lanPort := freeTCPPort(t)
	lan := newLANHost(t, "198.18.5.1", "198.18.5.2", "198.18.5.3")
	policy := fmt.Sprintf(`
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
endpoint = "127.0.0.1:%d"

[[site]]
name = "york"
key = %q
address = "100.80.0.2"
endpoint = "127.0.0.1:%d"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[identity]]
name = "xray-2"
source = "198.18.5.2/32"
site = "leeds"
groups = ["modality"]

[[service]]
name = "records"
site = "york"
vip = "100.81.0.20"
endpoints = ["127.0.0.1:%d"]

[[rule]]
name = "records-for-clinical-and-modalities"
from = ["group:clinical", "group:modality"]
to = ["records"]
`, leedsKeys.pub, leedsPort, yorkKeys.pub, yorkPort, alice.pub, be.web)
	listener := fmt.Sprintf("\n[[listener]]\nlisten = \"198.18.5.1:%d\"\nservice = \"records\"\n", lanPort)
	leeds := startGateway(t, writeSite(t, "leeds", leedsKeys, leedsPort, policy, listener).dir, leedsPort)
	york := startGateway(t, writeSite(t, "york", yorkKeys, yorkPort, policy, "").dir, yorkPort)

	a := newClient(t, "alice", "100.80.1.10", alice, leedsKeys.pub, leedsPort)
	records := fmt.Sprintf("http://100.81.0.20:%d/", be.web)

	t.Run("a desktop at Leeds reaches a service at York", func(t *testing.T) {
		var out string
		waitFor(t, 20*time.Second, "the site link to carry the first flow", func() bool {
			var err error
			out, err = a.exec(10*time.Second, "curl", "-sS", "--max-time", "5", records)
			return err == nil
		})
		if out != "hello from ehr\n" {
			t.Fatalf("curl records: %q", out)
		}
		here := leeds.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records"})
		there := york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records", "from_site": "leeds"})
		if here["flow"] != there["flow"] {
			t.Errorf("flow IDs differ: leeds %v, york %v", here["flow"], there["flow"])
		}
	})

	t.Run("a LAN device reaches it through the Leeds listener", func(t *testing.T) {
		url := fmt.Sprintf("http://198.18.5.1:%d/", lanPort)
		out, err := lan.exec(15*time.Second, "curl", "-sS", "--max-time", "10", "--interface", "198.18.5.2", url)
		if err != nil || out != "hello from ehr\n" {
			t.Fatalf("curl from xray-2: %v: %q", err, out)
		}
		york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "xray-2", "service": "records", "from_site": "leeds"})

		// Another address on the same LAN is no identity: refused.
		out, err = lan.exec(15*time.Second, "curl", "-sS", "--max-time", "10", "--interface", "198.18.5.3", url)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("curl from an unknown LAN address succeeded: %q", out)
		}
		leeds.waitEvent(t, map[string]any{"event": "flow.deny", "reason": "unknown-identity", "service": "records"})
	})
}
