package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

const sitesPolicy = `
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = "%[1]s"
address = "100.80.0.1"
endpoint = "127.0.0.1:51820"

[[site]]
name = "york"
key = "%[2]s"
address = "100.80.0.2"
endpoint = "127.0.0.1:51821"

[[site]]
name = "hull"
key = "%[3]s"
address = "100.80.0.3"
endpoint = "127.0.0.1:51822"

[[identity]]
name = "alice"
key = "%[4]s"
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[identity]]
name = "carol"
key = "%[5]s"
address = "100.80.2.10"
site = "york"
groups = ["clinical"]

[[identity]]
name = "mri-3"
source = "127.0.0.1/32"
site = "leeds"
groups = ["modality"]

[[service]]
name = "ehr"
site = "%[8]s"
endpoints = ["%[6]s"]

[[service]]
name = "echo"
site = "york"
endpoints = ["%[7]s/udp"]

[[service]]
name = "greeter"
site = "york"
endpoints = ["%[10]s"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr", "echo", "greeter"]

[[rule]]
name = "modality-greeter"
from = ["group:modality"]
to = ["greeter", "echo"]
%[9]s
`

// mesh is three gateways on one in-memory switch.
type mesh struct {
	t                 *testing.T
	sw                *memnet.Switch
	be                testBackends
	keys              map[string]testKey
	gws               map[string]*testGateway
	aliceKey, carolKy testKey
	ehrSite, extra    string
	lanPort           int
}

func (m *mesh) policy() string {
	k := m.keys
	return fmt.Sprintf(sitesPolicy, k["leeds"].pubB64(), k["york"].pubB64(), k["hull"].pubB64(),
		m.aliceKey.pubB64(), m.carolKy.pubB64(), m.be.echo, m.be.udpEcho, m.ehrSite, m.extra, m.be.other)
}

var meshPorts = map[string]int{"leeds": 51820, "york": 51821, "hull": 51822}

func (m *mesh) start(site string, dir string) *testGateway {
	extra := "[limits]\ndrain = \"1s\"\n"
	if site == "leeds" {
		extra += fmt.Sprintf("\n[[listener]]\nlisten = \"127.0.0.1:%d\"\nservice = \"greeter\"\n", m.lanPort)
		extra += fmt.Sprintf("\n[[listener]]\nlisten = \"127.0.0.1:%d/udp\"\nservice = \"echo\"\n", m.lanPort)
	}
	tg := startTestGatewayAt(m.t, m.sw, m.keys[site], site, meshPorts[site], dir, m.policy(), extra)
	m.gws[site] = tg
	return tg
}

// rewrite writes the current policy to site's dir and reloads it.
func (m *mesh) rewrite(site string) {
	m.t.Helper()
	tg := m.gws[site]
	if err := os.WriteFile(filepath.Join(tg.dir, "policy.toml"), []byte(m.policy()), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if _, err := tg.gw.Reload(); err != nil {
		m.t.Fatalf("reload %s: %v", site, err)
	}
}

// TestSites relays flows between three gateways: identity checked at both
// ends, the remote site deciding on its own, non-site peers refused, a
// service moving sites, UDP across sites, a site stopped and restarted.
func TestSites(t *testing.T) {
	t.Run("relayed with the identity checked at both ends", func(t *testing.T) {
		m, alice := newSitesMesh(t, "york")
		testwait.Until(t, 10*time.Second, "site link leeds->york", func() bool { return linkHealthy(m.gws["leeds"].gw, "york") })
		if err := m.echoOnce(alice); err != nil {
			t.Fatal(err)
		}
		here := m.gws["leeds"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "ehr"})
		there := m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "ehr", "from_site": "leeds"})
		if here["community_id"] == nil || here["community_id"] != there["community_id"] || here["src"] != there["src"] || here["dst"] != there["dst"] {
			t.Errorf("the two records of one flow differ: leeds %v, york %v", here, there)
		}
		if there["site"] != "leeds" || there["rule"] != "clinical-ehr" {
			t.Errorf("york's flow.allow: %v", there)
		}
		if m.gws["leeds"].audit.waitEvent(t, map[string]any{"event": "flow.end", "flow": here["flow"]})["bytes_in"].(float64) != 256<<10 {
			t.Error("leeds's relayed flow.end does not count the bytes")
		}
		end := m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.end", "community_id": here["community_id"]})
		if end["bytes_in"].(float64) != 256<<10 {
			t.Errorf("york flow.end bytes_in = %v", end["bytes_in"])
		}
		if end["error"] != nil {
			t.Errorf("a clean relayed flow ended with error %v at york", end["error"])
		}
	})

	t.Run("the backend's close reaches the client across sites", func(t *testing.T) {
		m, alice := newSitesMesh(t, "york")
		vip := m.gws["leeds"].gw.Policy().Service("greeter").VIP.String()
		c, err := dialVIP(alice, vip, m.be.other.Port())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c) // ends only when the backend's FIN crossed both gateways
		if err != nil || string(got) != "other" {
			t.Fatalf("read %q, %v", got, err)
		}
	})

	t.Run("a LAN device reaches a service at another site through a listener", func(t *testing.T) {
		m, _ := newSitesMesh(t, "york")
		lan := fmt.Sprintf("127.0.0.1:%d", m.lanPort)
		c, err := net.DialTimeout("tcp4", lan, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "other" {
			t.Fatalf("mri-3 through the listener: %q, %v", got, err)
		}
		m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "mri-3", "service": "greeter", "from_site": "leeds"})

		// An address no LAN identity holds gets nothing: the connection is
		// reset, so fast that the dial itself may report it.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
		if c, err = d.Dial("tcp4", lan); err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ = io.ReadAll(c)
			c.Close()
			if len(got) > 0 {
				t.Fatalf("an unknown LAN source read %q", got)
			}
		} else if !strings.Contains(err.Error(), "reset") {
			t.Fatalf("dial from an unknown LAN source: %v", err)
		}
		testwait.Until(t, 5*time.Second, "flow.deny unknown-identity for 127.0.0.3", func() bool {
			for _, ev := range m.gws["leeds"].audit.events(t) {
				if ev["event"] == "flow.deny" && ev["reason"] == "unknown-identity" && strings.HasPrefix(fmt.Sprint(ev["src"]), "127.0.0.3:") {
					return true
				}
			}
			return false
		})
	})

	t.Run("a LAN device's UDP reaches a service at another site through a listener", func(t *testing.T) {
		m, _ := newSitesMesh(t, "york")
		c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", m.lanPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 64)
		var got string
		for range 10 {
			c.Write([]byte("ping-lan"))
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				got = string(buf[:n])
				break
			}
		}
		if got != "ping-lan" {
			t.Fatalf("UDP echo through the listener: %q", got)
		}
		m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "mri-3", "service": "echo", "proto": "udp", "from_site": "leeds"})
	})

	t.Run("UDP across sites", func(t *testing.T) {
		m, alice := newSitesMesh(t, "york")
		vip := m.gws["leeds"].gw.Policy().Service("echo").VIP
		if err := udpEcho(alice, netip.AddrPortFrom(vip, m.be.udpEcho.Port())); err != nil {
			for _, s := range []string{"leeds", "york"} {
				for _, ev := range m.gws[s].audit.events(t) {
					if ev["proto"] == "udp" {
						t.Logf("%s: %v", s, ev)
					}
				}
			}
			t.Fatal(err)
		}
		m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "echo", "proto": "udp", "from_site": "leeds"})
	})

	t.Run("a peer that is not a site gateway gets nothing from the site link", func(t *testing.T) {
		m, _ := newSitesMesh(t, "york")
		carol := m.gws["york"].client(t, m.carolKy, "100.80.2.10")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := carol.DialContext(ctx, "tcp4", fmt.Sprintf("100.80.0.2:%d", SiteLinkPort))
		if err == nil {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "CONNECT ehr HTTP/1.1\r\nHost: ehr\r\n\r\n")
			n, _ := c.Read(make([]byte, 64))
			c.Close()
			if n > 0 {
				t.Fatal("a non-site peer got bytes from the site-link listener")
			}
		}
	})

	t.Run("the remote site decides on its own", func(t *testing.T) {
		m, alice := newSitesMesh(t, "york")
		// York's copy of the policy no longer lets clinical reach ehr.
		m.extra = "\n[[rule]]\nname = \"york-says-no\"\naction = \"deny\"\nfrom = [\"site:leeds\"]\nto = [\"ehr\"]\n"
		m.rewrite("york")
		defer func() { m.extra = ""; m.rewrite("york") }()
		if err := m.echoOnce(alice); err == nil {
			t.Fatal("york's deny did not hold")
		}
		m.gws["york"].audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "ehr", "reason": "deny-rule", "rule": "york-says-no", "from_site": "leeds"})
		testwait.Until(t, 10*time.Second, "leeds to see york's different policy hash", func() bool {
			for _, l := range m.gws["leeds"].gw.Status().SiteLinks {
				if l.Site == "york" && l.PolicyHash != "" && !l.SameHash {
					return true
				}
			}
			return false
		})
	})

	t.Run("a service moves sites and keeps its name and address", func(t *testing.T) {
		m, alice := newSitesMesh(t, "york")
		ehrVIP := m.vip("ehr")
		m.ehrSite = "hull"
		for _, s := range []string{"leeds", "york", "hull"} {
			m.rewrite(s)
		}
		if got := m.gws["leeds"].gw.Policy().Service("ehr").VIP.String(); got != ehrVIP {
			t.Fatalf("ehr's VIP moved with the service: %s, was %s", got, ehrVIP)
		}
		testwait.Until(t, 10*time.Second, "site link leeds->hull", func() bool { return linkHealthy(m.gws["leeds"].gw, "hull") })
		if err := m.echoOnce(alice); err != nil {
			t.Fatal(err)
		}
		m.gws["hull"].audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "ehr", "from_site": "leeds"})
	})

	t.Run("a site stopped fails fast and recovers by itself", func(t *testing.T) {
		m, alice := newSitesMesh(t, "hull")
		hullDir := m.gws["hull"].dir
		m.gws["hull"].gw.Close()
		testwait.Until(t, 20*time.Second, "leeds to see hull down", func() bool { return !linkHealthy(m.gws["leeds"].gw, "hull") })
		start := time.Now()
		if err := m.echoOnce(alice); err == nil {
			t.Fatal("a flow to a stopped site went through")
		} else if !strings.Contains(err.Error(), "refused") {
			t.Errorf("want connection refused, got %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal for a down site took %v", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		if err := alice.Ping(ctx, netip.MustParseAddr(m.vip("ehr"))); err == nil {
			t.Error("the home gateway answered a ping for a service whose site is down")
		}
		m.start("hull", hullDir)
		testwait.Until(t, 20*time.Second, "leeds to see hull back", func() bool { return linkHealthy(m.gws["leeds"].gw, "hull") })
		if err := m.echoOnce(alice); err != nil {
			for _, s := range []string{"leeds", "hull"} {
				evs := m.gws[s].audit.events(t)
				for _, ev := range evs[max(0, len(evs)-4):] {
					t.Logf("%s: %v", s, ev)
				}
			}
			t.Fatalf("after hull restarted: %v", err)
		}
	})
}

// newSitesMesh starts leeds, york and hull with ehr served at ehrSite, and
// alice at Leeds, and waits for Leeds's links to the other two: each
// subtest has its own, so none depends on another.
func newSitesMesh(t *testing.T, ehrSite string) (*mesh, *wgclient.Client) {
	m := &mesh{t: t, sw: memnet.NewSwitch(), be: startTestBackends(t), gws: map[string]*testGateway{},
		keys:     map[string]testKey{"leeds": newTestKey(t), "york": newTestKey(t), "hull": newTestKey(t)},
		aliceKey: newTestKey(t), carolKy: newTestKey(t), ehrSite: ehrSite, lanPort: freeTCPPort(t)}
	for _, s := range []string{"leeds", "york", "hull"} {
		m.start(s, t.TempDir())
	}
	alice := m.gws["leeds"].client(t, m.aliceKey, "100.80.1.10")
	for _, s := range []string{"york", "hull"} {
		testwait.Until(t, 10*time.Second, "site link leeds->"+s, func() bool { return linkHealthy(m.gws["leeds"].gw, s) })
	}
	return m, alice
}

// vip is a service's virtual address, as Leeds's policy has it.
func (m *mesh) vip(service string) string {
	return m.gws["leeds"].gw.Policy().Service(service).VIP.String()
}

// echoOnce sends 256 KiB through ehr's echo backend as alice and checks
// the answer.
func (m *mesh) echoOnce(alice *wgclient.Client) error {
	c, err := dialVIP(alice, m.vip("ehr"), m.be.echo.Port())
	if err != nil {
		return err
	}
	defer c.Close()
	payload := make([]byte, 256<<10)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, append([]byte("echo:"), payload...)) {
		return fmt.Errorf("echo across sites differs: %d bytes", len(got))
	}
	return nil
}

func linkHealthy(g *Gateway, site string) bool {
	for _, l := range g.Status().SiteLinks {
		if l.Site == site {
			return l.Healthy && l.PolicyHash != ""
		}
	}
	return false
}
