package gateway

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// TestReloadAppliesDNSUpstreams: a reload that changes [dns] upstream sends
// the next query to the new upstream, even for a name the old one answered
// (its cached answer goes with it).
func TestReloadAppliesDNSUpstreams(t *testing.T) {
	oldUp := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	newUp := testnet.NewDNS(t, testnet.AnswerA("93.184.216.35", 300))
	be := startTestBackends(t)
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	tg := startTestGateway(t, memnet.NewSwitch(), keys[0], "leeds", sprintfPolicy(keys[0], keys[1], keys[2], be),
		"[dns]\nupstream = [\""+oldUp.Addr+"\"]\n")
	alice := tg.client(t, keys[1], "100.80.1.10")

	if got := resolveA(t, alice, "www.example.org"); got != "93.184.216.34" {
		t.Fatalf("before the reload: %s, want the old upstream's answer", got)
	}
	gw := filepath.Join(tg.dir, "gateway.toml")
	text, err := os.ReadFile(gw)
	if err != nil {
		t.Fatal(err)
	}
	text = bytes.Replace(text, []byte(oldUp.Addr), []byte(newUp.Addr), 1)
	if err := os.WriteFile(gw, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := resolveA(t, alice, "www.example.org"); got != "93.184.216.35" {
		t.Errorf("after the reload: %s, want the new upstream's answer", got)
	}
	if n := oldUp.Queries.Load(); n != 1 {
		t.Errorf("the old upstream had %d queries, want 1", n)
	}
}

// resolveA asks the gateway's DNS server, through c, for name's A record
// and returns the address answered.
func resolveA(t *testing.T, c *wgclient.Client, name string) string {
	t.Helper()
	conn, err := c.DialUDP(netip.MustParseAddrPort("100.80.0.1:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	dc := &dns.Conn{Conn: conn}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	if err := dc.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("%s: %v", name, r)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok {
		t.Fatalf("%s: %v", name, r)
	}
	return a.A.String()
}
