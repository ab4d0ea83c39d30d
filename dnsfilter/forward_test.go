package dnsfilter

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/policy"
)

func TestForwardFailover(t *testing.T) {
	dead := testnet.NewDNS(t, func(dns.ResponseWriter, *dns.Msg) {}) // never answers
	bad := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	good := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{
		Upstreams: []string{dead.Addr, bad.Addr, good.Addr},
		Timeout:   100 * time.Millisecond,
		CacheSize: -1, // no cache: every question goes upstream
	}, testView())
	start := time.Now()
	m := ask(t, f, aliceAddr, "example.com", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("reply %v", m)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 3*time.Second {
		t.Errorf("took %v; want about one timeout", d)
	}
	if dead.Queries.Load() != 1 || bad.Queries.Load() != 1 || good.Queries.Load() != 1 {
		t.Errorf("queries dead %d bad %d good %d", dead.Queries.Load(), bad.Queries.Load(), good.Queries.Load())
	}
	// The upstream that answered is tried first from now on.
	ask(t, f, aliceAddr, "example.org", dns.TypeA)
	if dead.Queries.Load() != 1 || good.Queries.Load() != 2 {
		t.Errorf("after failover: dead %d good %d", dead.Queries.Load(), good.Queries.Load())
	}
}

func TestForwardAllFail(t *testing.T) {
	bad := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		w.WriteMsg(m)
	})
	// A port nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{closed, bad.Addr}, Timeout: 100 * time.Millisecond}, testView())
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	// Failures are not cached.
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	if n := bad.Queries.Load(); n != 2 {
		t.Errorf("%d queries to the refusing upstream, want 2", n)
	}
	// No upstream at all: SERVFAIL too.
	f, _, _ = newTestFilter(t, Config{}, testView())
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream: rcode %s", dns.RcodeToString[m.Rcode])
	}
}

func TestForwardTruncatedRetriesTCP(t *testing.T) {
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncated = true
		} else {
			for i := range 40 {
				m.Answer = append(m.Answer, mustRR("%s 300 IN A 93.184.216.%d", r.Question[0].Name, i+1))
			}
		}
		w.WriteMsg(m)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	m := ask(t, f, aliceAddr, "big.example.com", dns.TypeA)
	if len(m.Answer) == 0 || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("reply %v", m)
	}
	// 40 A records do not fit 512 bytes: the client gets TC over UDP.
	if !m.Truncated {
		t.Errorf("UDP reply of %d records not truncated", len(m.Answer))
	}
	if up.TCP.Load() != 1 || up.Queries.Load() != 2 {
		t.Errorf("queries %d, over TCP %d", up.Queries.Load(), up.TCP.Load())
	}
	// Over TCP the client gets them all, from the cache.
	r := new(dns.Msg)
	r.SetQuestion("big.example.com.", dns.TypeA)
	w := &fakeWriter{remote: &net.TCPAddr{IP: aliceAddr.IP, Port: 1234}}
	f.ServeDNS(w, r)
	if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 40 || w.msgs[0].Truncated {
		t.Errorf("TCP reply %v", w.msgs)
	}
}

func TestForwardCache(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, clk, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	clk.advance(100 * time.Second)
	m := ask(t, f, bobAddr, "EXAMPLE.com", dns.TypeA) // the cache is shared and case-blind
	if n := up.Queries.Load(); n != 1 {
		t.Fatalf("%d upstream queries, want 1 (cache hit)", n)
	}
	if ttl := m.Answer[0].Header().Ttl; ttl != 200 {
		t.Errorf("TTL %d after 100s, want 200", ttl)
	}
	if m.Question[0].Name != "EXAMPLE.com." {
		t.Errorf("question %q not echoed as asked", m.Question[0].Name)
	}
	clk.advance(200 * time.Second)
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	if n := up.Queries.Load(); n != 2 {
		t.Errorf("%d upstream queries after expiry, want 2", n)
	}
	// Another type is another question.
	ask(t, f, aliceAddr, "example.com", dns.TypeAAAA)
	if n := up.Queries.Load(); n != 3 {
		t.Errorf("%d upstream queries, want 3", n)
	}
}

func TestCacheEvictsLRU(t *testing.T) {
	c := newCache(2)
	now := time.Now()
	put := func(name string) {
		c.put(&cacheEntry{key: cacheKey{name, 1, 1}, msg: new(dns.Msg), stored: now, expires: now.Add(time.Minute)}, 0)
	}
	put("a")
	put("b")
	c.get(cacheKey{"a", 1, 1}, now) // a is now more recent than b
	put("c")
	if c.get(cacheKey{"b", 1, 1}, now) != nil || c.get(cacheKey{"a", 1, 1}, now) == nil || c.get(cacheKey{"c", 1, 1}, now) == nil {
		t.Error("LRU evicted the wrong entry")
	}
	if c.len() != 2 {
		t.Errorf("len %d", c.len())
	}
}

func TestNegativeCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		soa  string // "" for no SOA
		ttl  time.Duration
	}{
		{"soa-min", "example.com. 3600 IN SOA ns.example.com. h.example.com. 1 2 3 4 30", 30 * time.Second},
		{"soa-ttl", "example.com. 20 IN SOA ns.example.com. h.example.com. 1 2 3 4 600", 20 * time.Second},
		{"capped", "example.com. 3600 IN SOA ns.example.com. h.example.com. 1 2 3 4 900", negativeTTL},
		{"no-soa", "", negativeTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
				m := new(dns.Msg)
				m.SetRcode(r, dns.RcodeNameError)
				if tc.soa != "" {
					m.Ns = []dns.RR{mustRR("%s", tc.soa)}
				}
				w.WriteMsg(m)
			})
			f, clk, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
			if m := ask(t, f, aliceAddr, "nx.example.com", dns.TypeA); m.Rcode != dns.RcodeNameError {
				t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
			}
			clk.advance(tc.ttl - time.Second)
			if m := ask(t, f, aliceAddr, "nx.example.com", dns.TypeA); m.Rcode != dns.RcodeNameError || up.Queries.Load() != 1 {
				t.Fatalf("within TTL: rcode %s, %d queries", dns.RcodeToString[m.Rcode], up.Queries.Load())
			}
			clk.advance(time.Second)
			ask(t, f, aliceAddr, "nx.example.com", dns.TypeA)
			if up.Queries.Load() != 2 {
				t.Errorf("after TTL: %d queries, want 2", up.Queries.Load())
			}
		})
	}
}

func TestForwardCoalesces(t *testing.T) {
	release := make(chan struct{})
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		testnet.AnswerA("93.184.216.34", 300)(w, r)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}, Timeout: 5 * time.Second}, testView())
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			r := new(dns.Msg)
			r.SetQuestion("slow.example.com.", dns.TypeA)
			w := &fakeWriter{remote: aliceAddr}
			f.ServeDNS(w, r)
			if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 1 {
				t.Errorf("reply %v", w.msgs)
			}
		})
	}
	// Wait until the leader's query reached the upstream and all ten
	// questions wait on the forwarder, then release the answer.
	testwait.Until(t, 5*time.Second, "ten waiting questions", func() bool {
		f.fwd.mu.Lock()
		defer f.fwd.mu.Unlock()
		return up.Queries.Load() > 0 && f.fwd.waits["alice"] == 10
	})
	close(release)
	wg.Wait()
	if n := up.Queries.Load(); n != 1 {
		t.Errorf("%d upstream queries for 10 identical questions, want 1", n)
	}
}

func TestInternal(t *testing.T) {
	ov := testView().ov
	for a, want := range map[string]bool{
		"10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "100.64.0.1": true, "100.127.255.255": true,
		"127.0.0.1": true, "169.254.1.1": true, "0.0.0.0": true, "0.1.2.3": true, "::": true, "::1": true,
		"fe80::1": true, "fd00::1": true, "fc00::1": true, "::ffff:10.0.0.1": true,
		"100.80.1.1": true, "100.81.0.10": true, // overlay and service prefixes (inside 100.64/10 anyway)
		"93.184.216.34": false, "100.128.0.1": false, "8.8.8.8": false, "2606:4700::1111": false,
		// NAT64 and 6to4 addresses are as internal as the IPv4 they embed.
		"64:ff9b::a00:1": true, "64:ff9b::6450:10a": true, "64:ff9b::7f00:1": true, "2002:c0a8:101::1": true,
		"64:ff9b:1::a00:1": true, "64:ff9b:1:a:50:1::": true,
		"64:ff9b::808:808": false, "2002:808:808::1": false, "64:ff9b:1::808:808": false, "64:ff9b:1::": false,
	} {
		if got := internal(netip.MustParseAddr(a), ov); got != want {
			t.Errorf("internal(%s) = %v", a, got)
		}
	}
	ov6 := policy.Overlay{Prefix: netip.MustParsePrefix("2001:db8:80::/48"), ServicePrefix: netip.MustParsePrefix("2001:db8:81::/48")}
	if !internal(netip.MustParseAddr("2001:db8:81::10"), ov6) || internal(netip.MustParseAddr("2001:db8:82::10"), ov6) {
		t.Error("v6 overlay prefixes")
	}
}

func TestRebindingStripped(t *testing.T) {
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0].Name
		switch q {
		case "mixed.example.com.":
			m.Answer = []dns.RR{mustRR("%s 300 IN A 10.0.0.1", q), mustRR("%s 300 IN A 93.184.216.34", q)}
		case "cname.example.com.":
			m.Answer = []dns.RR{mustRR("%s 300 IN CNAME internal.example.com.", q), mustRR("internal.example.com. 300 IN A 192.168.1.1")}
		default:
			m.Answer = []dns.RR{mustRR("%s 300 IN A 100.81.0.10", q)}
			m.Extra = []dns.RR{mustRR("ns.example.com. 300 IN A 127.0.0.1")}
		}
		w.WriteMsg(m)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}, AllowInternal: []string{"**.corp.example"}}, testView())
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"mixed.example.com", []string{"93.184.216.34"}},
		{"cname.example.com", []string{"CNAME internal.example.com."}},
		{"vip.example.com", nil},
		{"app.corp.example", []string{"100.81.0.10"}},
		{"corp.example", nil}, // the apex is not implied
	} {
		m := ask(t, f, aliceAddr, tc.name, dns.TypeA)
		got := answers(m)
		if m.Rcode != dns.RcodeSuccess || len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
			t.Errorf("%s: %s %v, want NOERROR %v", tc.name, dns.RcodeToString[m.Rcode], got, tc.want)
		}
		for _, rr := range m.Extra {
			if _, ok := rr.(*dns.A); ok && tc.name != "app.corp.example" {
				t.Errorf("%s: internal glue kept: %v", tc.name, rr)
			}
		}
	}
	if _, err := newFilter(Config{AllowInternal: []string{"bad name"}}, func() View { return nil }, time.Now); err == nil {
		t.Error("bad AllowInternal pattern accepted")
	}
}

func TestForwardWrongQuestion(t *testing.T) {
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Name = "other.example.com."
		m.Answer = []dns.RR{mustRR("other.example.com. 300 IN A 93.184.216.34")}
		w.WriteMsg(m)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("answer to another question accepted: %v", m)
	}
}

func TestStatsAndOverload(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}, Blocklists: []string{writeFile(t, "l", "ads.example\n")}}, testView())
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	ask(t, f, aliceAddr, "ads.example", dns.TypeA)
	ask(t, f, evilAddr, "example.com", dns.TypeA)
	ask(t, f, aliceAddr, "www.nhs.uk", dns.TypeA)
	// Every upstream slot taken: the next miss is SERVFAIL without an exchange.
	for range maxInflight {
		f.fwd.inflight <- struct{}{}
	}
	if m := ask(t, f, aliceAddr, "other.example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("overloaded: rcode %s", dns.RcodeToString[m.Rcode])
	}
	want := Stats{Queries: 6, Refused: 1, Blocked: 1, ServFail: 1, CacheHits: 1, CacheMisses: 3, EgressLearned: 1, CacheEntries: 2,
		Rcodes: map[string]uint64{"NOERROR": 3, "NXDOMAIN": 1, "REFUSED": 1, "SERVFAIL": 1}}
	if got := f.Stats(); !reflect.DeepEqual(got, want) {
		t.Errorf("Stats = %+v\nwant    %+v", got, want)
	}
	if n := up.Queries.Load(); n != 2 {
		t.Errorf("%d upstream queries, want 2", n)
	}
}

// TestInflightSharePerIdentity: alice asks names the upstream never
// answers, as many at once as she likes; she gets her share of the
// upstream slots and SERVFAIL beyond it, and bob still resolves although
// her share is more than the slots left over without the per-identity
// bound.
func TestInflightSharePerIdentity(t *testing.T) {
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if strings.HasPrefix(r.Question[0].Name, "never") {
			return // a name that never resolves
		}
		testnet.AnswerA("93.184.216.34", 300)(w, r)
	})
	const share = 4
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}, Timeout: time.Second, MaxInflightPerIdentity: share}, testView())
	f.fwd.inflight = make(chan struct{}, 2*share) // room for alice's share and bob's, not for 20 of alice's
	var wg sync.WaitGroup
	defer wg.Wait()
	var servfail atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			if m := ask(t, f, aliceAddr, fmt.Sprintf("never%d.example.com", i), dns.TypeA); m.Rcode == dns.RcodeServerFailure {
				servfail.Add(1)
			}
		})
	}
	// Every one of alice's questions reached the upstream or was refused.
	testwait.Until(t, 10*time.Second, "each of alice's questions upstream or refused", func() bool { return up.Queries.Load()+servfail.Load() >= 20 })
	if n := servfail.Load(); n != 20-share {
		t.Errorf("%d of alice's 20 questions refused at once, want %d", n, 20-share)
	}
	if m := ask(t, f, bobAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("bob while alice holds her share: %s %v", dns.RcodeToString[m.Rcode], answers(m))
	}
	// A cached answer costs no share: alice gets it while hers is full.
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Errorf("alice from the cache: %s", dns.RcodeToString[m.Rcode])
	}
	if n := up.Queries.Load(); n != share+1 {
		t.Errorf("%d upstream queries, want alice's %d and bob's 1", n, share)
	}
}

// TestRebindingTrustNames: upstream answers that alias into the overlay
// domain or a service's names, that embed internal IPv4 addresses in
// NAT64 or 6to4 addresses, or that name a service endpoint's address
// (public or not) are stripped; the same kinds of address that embed or
// are public space pass.
func TestRebindingTrustNames(t *testing.T) {
	v := testView()
	v.svcs[0].Endpoints = []policy.Endpoint{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32")},
		{Prefix: netip.MustParsePrefix("203.0.113.0/28")},
	}
	answersFor := map[string][]string{
		"alias.example.com.": {"alias.example.com. 300 IN CNAME ehr.nhs.internal.", "ehr.nhs.internal. 300 IN A 93.184.216.34"},
		"deep.example.com.":  {"deep.example.com. 300 IN CNAME a.b.NHS.Internal.", "a.b.nhs.internal. 300 IN A 93.184.216.34"},
		"extra.example.com.": {"extra.example.com. 300 IN CNAME pacs.leeds.example.", "pacs.leeds.example. 300 IN A 93.184.216.34"},
		"dname.example.com.": {"dname.example.com. 300 IN DNAME nhs.internal."},
		"chain.example.com.": {"chain.example.com. 300 IN CNAME cdn.example.net.", "cdn.example.net. 300 IN A 93.184.216.34"},
		"nat64.example.com.": {"nat64.example.com. 300 IN AAAA 64:ff9b::10.1.2.3", "nat64.example.com. 300 IN AAAA 64:ff9b::93.184.216.34"},
		"local64.example.com.": {"local64.example.com. 300 IN AAAA 64:ff9b:1::c0a8:101", // 192.168.1.1 at /96
			"local64.example.com. 300 IN AAAA 64:ff9b:1:a:50:1::",         // 10.80.0.1 at /56
			"local64.example.com. 300 IN AAAA 64:ff9b:1:ac10:5:500::",     // 172.16.5.5 at /48
			"local64.example.com. 300 IN AAAA 64:ff9b:1:0:5d:b8d8:2200:0", // 93.184.216.34 at /64
			"local64.example.com. 300 IN AAAA 64:ff9b:1::5db8:d822"},      // 93.184.216.34 at /96
		"6to4.example.com.":     {"6to4.example.com. 300 IN AAAA 2002:6450:10a::1", "6to4.example.com. 300 IN AAAA 2002:5db8:d822::1"},
		"endpoint.example.com.": {"endpoint.example.com. 300 IN A 198.51.100.7", "endpoint.example.com. 300 IN A 203.0.113.9", "endpoint.example.com. 300 IN A 198.51.100.8"},
		"app.corp.example.":     {"app.corp.example. 300 IN A 198.51.100.7", "app.corp.example. 300 IN A 10.0.0.1"},
		"alias.corp.example.":   {"alias.corp.example. 300 IN CNAME ehr.nhs.internal.", "ehr.nhs.internal. 300 IN A 93.184.216.34"},
	}
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, s := range answersFor[r.Question[0].Name] {
			if rr := mustRR("%s", s); rr.Header().Rrtype == r.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME || rr.Header().Rrtype == dns.TypeDNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		m.Extra = []dns.RR{mustRR("ns.nhs.internal. 300 IN A 93.184.216.35")}
		w.WriteMsg(m)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}, AllowInternal: []string{"**.corp.example"}}, v)
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{"alias.example.com", dns.TypeA, nil},
		{"deep.example.com", dns.TypeA, nil},
		{"extra.example.com", dns.TypeA, nil},
		{"dname.example.com", dns.TypeA, nil},
		{"chain.example.com", dns.TypeA, []string{"CNAME cdn.example.net.", "93.184.216.34"}},
		{"nat64.example.com", dns.TypeAAAA, []string{"64:ff9b::5db8:d822"}},
		{"local64.example.com", dns.TypeAAAA, []string{"64:ff9b:1:0:5d:b8d8:2200:0", "64:ff9b:1::5db8:d822"}},
		{"6to4.example.com", dns.TypeAAAA, []string{"2002:5db8:d822::1"}},
		{"endpoint.example.com", dns.TypeA, []string{"198.51.100.8"}},
	} {
		m := ask(t, f, aliceAddr, tc.name, tc.qtype)
		if got := answers(m); m.Rcode != dns.RcodeSuccess || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %s %v, want NOERROR %v", tc.name, dns.RcodeToString[m.Rcode], got, tc.want)
		}
		if len(m.Extra) != 0 {
			t.Errorf("%s: glue for a name of the trust kept: %v", tc.name, m.Extra)
		}
	}
	// allow_internal lets private and endpoint addresses through, never an
	// alias into the trust.
	if got := answers(ask(t, f, aliceAddr, "app.corp.example", dns.TypeA)); !reflect.DeepEqual(got, []string{"198.51.100.7", "10.0.0.1"}) {
		t.Errorf("allow_internal: %v", got)
	}
	if got := answers(ask(t, f, aliceAddr, "alias.corp.example", dns.TypeA)); got != nil {
		t.Errorf("allow_internal alias into the trust: %v", got)
	}
}
