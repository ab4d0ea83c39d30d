package dnsfilter

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/policy"
)

func nhsUpstream(t *testing.T, ttl uint32) *testnet.DNS {
	return testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0].Name
		if r.Question[0].Qtype == dns.TypeA {
			switch q {
			case "intranet.nhs.uk.":
				m.Answer = []dns.RR{mustRR("%s %d IN A 10.9.9.9", q, ttl)}
			case "stray.nhs.uk.": // records for names the chain does not reach
				m.Answer = []dns.RR{
					mustRR("%s %d IN CNAME a.example.net.", q, ttl),
					mustRR("b.example.net. %d IN A 93.184.216.99", ttl),
					mustRR("a.example.net. %d IN A 93.184.216.98", ttl),
				}
			default:
				m.Answer = []dns.RR{
					mustRR("%s %d IN CNAME cdn.example.net.", q, ttl),
					mustRR("cdn.example.net. %d IN A 93.184.216.34", ttl),
				}
			}
		}
		w.WriteMsg(m)
	})
}

var cdnAddr = netip.MustParseAddr("93.184.216.34")

func TestEgressLearned(t *testing.T) {
	v := testView()
	up := nhsUpstream(t, 120)
	f, clk, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, v)
	alice, bob := v.ids[0], v.ids[1]
	tcp := policy.ProtoTCP

	if s := f.EgressService(alice, cdnAddr, 443, tcp); s != nil {
		t.Fatalf("before any lookup: %v", s.Name)
	}
	ask(t, f, aliceAddr, "www.nhs.uk", dns.TypeA)
	ask(t, f, bobAddr, "www.nhs.uk", dns.TypeA)
	for _, tc := range []struct {
		id    *policy.Identity
		dst   netip.Addr
		port  uint16
		proto policy.Proto
		want  string
	}{
		{alice, cdnAddr, 443, tcp, "nhs-web"},
		{alice, netip.MustParseAddr("::ffff:93.184.216.34"), 443, tcp, "nhs-web"},
		{alice, cdnAddr, 80, tcp, "nhs-any"}, // both match www.nhs.uk; nhs-any offers 80
		{alice, cdnAddr, 22, tcp, "nhs-web"}, // none offers 22: the first, for Decide to refuse
		{alice, netip.MustParseAddr("93.184.216.35"), 443, tcp, ""},
		{bob, cdnAddr, 443, tcp, ""}, // bob asked, but may reach no egress service
		{nil, cdnAddr, 443, tcp, ""},
	} {
		got := ""
		if s := f.EgressService(tc.id, tc.dst, tc.port, tc.proto); s != nil {
			got = s.Name
		}
		if got != tc.want {
			t.Errorf("EgressService(%v, %v, %d) = %q, want %q", tc.id, tc.dst, tc.port, got, tc.want)
		}
	}
	// a.b.nhs.uk matches only **.nhs.uk.
	ask(t, f, aliceAddr, "a.b.nhs.uk", dns.TypeA)
	if s := f.EgressService(alice, cdnAddr, 443, tcp); s == nil || s.Name != "nhs-web" {
		t.Errorf("learning through nhs-any dropped nhs-web: %v", s)
	}
	// Only the chain from the question counts, in any order.
	ask(t, f, aliceAddr, "stray.nhs.uk", dns.TypeA)
	if f.EgressService(alice, netip.MustParseAddr("93.184.216.99"), 443, tcp) != nil ||
		f.EgressService(alice, netip.MustParseAddr("93.184.216.98"), 443, tcp) == nil {
		t.Error("learned a record off the CNAME chain, or missed one on it")
	}
	// Stripped answers teach nothing.
	ask(t, f, aliceAddr, "intranet.nhs.uk", dns.TypeA)
	if s := f.EgressService(alice, netip.MustParseAddr("10.9.9.9"), 443, tcp); s != nil {
		t.Errorf("stripped address learned: %v", s.Name)
	}
	// The allowance ends with the TTL.
	clk.advance(119 * time.Second)
	if f.EgressService(alice, cdnAddr, 443, tcp) == nil {
		t.Error("allowance ended before the TTL")
	}
	clk.advance(time.Second)
	if s := f.EgressService(alice, cdnAddr, 443, tcp); s != nil {
		t.Errorf("allowance outlived the TTL: %v", s.Name)
	}
}

func TestEgressTTLClamped(t *testing.T) {
	for _, tc := range []struct {
		ttl  uint32
		want time.Duration
	}{
		{5, 30 * time.Second},
		{0, 30 * time.Second},
		{86400, time.Hour},
	} {
		v := testView()
		f, clk, _ := newTestFilter(t, Config{Upstreams: []string{nhsUpstream(t, tc.ttl).Addr}}, v)
		ask(t, f, aliceAddr, "www.nhs.uk", dns.TypeA)
		clk.advance(tc.want - time.Second)
		if f.EgressService(v.ids[0], cdnAddr, 443, policy.ProtoTCP) == nil {
			t.Errorf("TTL %d: ended before %v", tc.ttl, tc.want)
		}
		clk.advance(time.Second)
		if f.EgressService(v.ids[0], cdnAddr, 443, policy.ProtoTCP) != nil {
			t.Errorf("TTL %d: lasted beyond %v", tc.ttl, tc.want)
		}
	}
}

func TestEgressFollowsPolicy(t *testing.T) {
	v := testView()
	cur := View(v)
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{nhsUpstream(t, 300).Addr}}, nil)
	f.view = func() View { return cur }
	ask(t, f, aliceAddr, "www.nhs.uk", dns.TypeA)
	alice := v.ids[0]
	if f.EgressService(alice, cdnAddr, 443, policy.ProtoTCP) == nil {
		t.Fatal("not learned")
	}
	// A reload that narrows the pattern withdraws the allowance.
	v2 := testView()
	v2.svcs = v2.svcs[:3]
	v2.svcs[2].Egress = []string{"portal.nhs.uk"}
	cur = v2
	if s := f.EgressService(alice, cdnAddr, 443, policy.ProtoTCP); s != nil {
		t.Errorf("allowance survived a reload that removed its pattern: %v", s.Name)
	}
	cur = nil
	if s := f.EgressService(alice, cdnAddr, 443, policy.ProtoTCP); s != nil {
		t.Errorf("allowance without a policy: %v", s.Name)
	}
}

func TestEgressTableBounded(t *testing.T) {
	tab := newEgressTable(3)
	now := time.Now()
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{93, 0, 0, byte(i)}) }
	has := func(i int) bool { return len(tab.grants("alice", addr(i), now, nil)) > 0 }
	for i := 1; i <= 3; i++ {
		tab.learn("alice", []string{"web"}, "x.nhs.uk", addr(i), time.Minute, now)
	}
	tab.learn("alice", []string{"web"}, "x.nhs.uk", addr(1), time.Minute, now) // 1 is now the newest
	tab.learn("alice", []string{"web"}, "x.nhs.uk", addr(4), time.Minute, now) // evicts 2, the oldest
	if !has(1) || has(2) || !has(3) || !has(4) {
		t.Errorf("have 1:%v 2:%v 3:%v 4:%v; want 1, 3, 4", has(1), has(2), has(3), has(4))
	}
	if n := tab.len("alice"); n != 3 {
		t.Errorf("len %d, want 3", n)
	}
	// Many relearns of the same address keep the FIFO bounded.
	for range 1000 {
		tab.learn("alice", []string{"web"}, "x.nhs.uk", addr(4), time.Minute, now)
	}
	s := tab.set("alice", false)
	if len(s.fifo) > 2*3+16 {
		t.Errorf("FIFO grew to %d", len(s.fifo))
	}
	// Expired addresses at the front are dropped as new ones come.
	later := now.Add(2 * time.Minute)
	tab.learn("alice", []string{"web"}, "x.nhs.uk", addr(5), time.Minute, later)
	if n := tab.len("alice"); n != 1 {
		t.Errorf("len %d after expiry, want 1", n)
	}
}

func BenchmarkEgressService(b *testing.B) {
	v := testView()
	f, _, _ := newTestFilter(b, Config{}, v)
	f.egress.learn("alice", []string{"nhs-web"}, "www.nhs.uk", cdnAddr, time.Minute, f.now())
	alice := v.ids[0]
	b.ReportAllocs()
	for b.Loop() {
		if f.EgressService(alice, cdnAddr, 443, policy.ProtoTCP) == nil {
			b.Fatal("nil")
		}
	}
}

func TestChainAddrs(t *testing.T) {
	ans := []dns.RR{
		mustRR("a.example. 60 IN CNAME b.example."),
		mustRR("b.example. 60 IN CNAME a.example."), // a loop
		mustRR("B.example. 60 IN A 93.184.216.1"),
		mustRR("c.example. 60 IN A 93.184.216.2"),
	}
	got := chainAddrs(ans, "A.example.")
	if len(got) != maxChain/2 || got[0].(*dns.A).A.String() != "93.184.216.1" {
		t.Errorf("chainAddrs = %v", got)
	}
	if got := chainAddrs(ans, "c.example."); len(got) != 1 {
		t.Errorf("direct: %v", got)
	}
	if got := chainAddrs(nil, "a.example."); got != nil {
		t.Errorf("empty: %v", got)
	}
}

func TestEgressServiceDoesNotAllocate(t *testing.T) {
	v := testView()
	f, _, _ := newTestFilter(t, Config{}, v)
	f.egress.learn("alice", []string{"nhs-web", "nhs-any"}, "www.nhs.uk", cdnAddr, time.Minute, f.now())
	alice := v.ids[0]
	if n := testing.AllocsPerRun(100, func() { f.EgressService(alice, cdnAddr, 80, policy.ProtoTCP) }); n != 0 {
		t.Errorf("EgressService allocates %v times", n)
	}
}
