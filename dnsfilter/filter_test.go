package dnsfilter

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/policy"
)

func TestAdmission(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	q := func(mod func(r *dns.Msg)) *dns.Msg {
		r := new(dns.Msg)
		r.SetQuestion("example.com.", dns.TypeA)
		mod(r)
		return r
	}
	for _, tc := range []struct {
		name  string
		from  net.Addr
		req   *dns.Msg
		rcode int
	}{
		{"unknown identity", evilAddr, q(func(*dns.Msg) {}), dns.RcodeRefused},
		{"no address", nil, q(func(*dns.Msg) {}), dns.RcodeRefused},
		{"nil UDP address", (*net.UDPAddr)(nil), q(func(*dns.Msg) {}), dns.RcodeRefused},
		{"other address", &net.IPAddr{IP: aliceAddr.IP}, q(func(*dns.Msg) {}), dns.RcodeRefused},
		{"ANY", aliceAddr, q(func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeANY }), dns.RcodeRefused},
		{"AXFR", aliceAddr, q(func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeAXFR }), dns.RcodeRefused},
		{"CHAOS", aliceAddr, q(func(r *dns.Msg) { r.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"no question", aliceAddr, q(func(r *dns.Msg) { r.Question = nil }), dns.RcodeFormatError},
		{"two questions", aliceAddr, q(func(r *dns.Msg) { r.Question = append(r.Question, r.Question[0]) }), dns.RcodeFormatError},
		{"NOTIFY", aliceAddr, q(func(r *dns.Msg) { r.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		{"EDNS version 1", aliceAddr, q(func(r *dns.Msg) { r.SetEdns0(1232, false); r.Extra[0].(*dns.OPT).SetVersion(1) }), dns.RcodeBadVers},
		{"fine", aliceAddr, q(func(*dns.Msg) {}), dns.RcodeSuccess},
		{"TCP", &net.TCPAddr{IP: aliceAddr.IP, Port: 5353}, q(func(*dns.Msg) {}), dns.RcodeSuccess},
		{"v4-mapped", &net.UDPAddr{IP: net.ParseIP("::ffff:100.80.1.10"), Port: 1}, q(func(*dns.Msg) {}), dns.RcodeSuccess},
	} {
		m := exchange(t, f, tc.from, tc.req)
		if m.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", tc.name, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
	if n := up.Queries.Load(); n != 1 {
		t.Errorf("%d upstream queries, want 1", n)
	}
	// Responses are never answered.
	r := q(func(r *dns.Msg) { r.Response = true })
	w := &fakeWriter{remote: aliceAddr}
	f.ServeDNS(w, r)
	if len(w.msgs) != 0 {
		t.Errorf("answered a response: %v", w.msgs)
	}
}

func TestNoPolicyRefuses(t *testing.T) {
	f, err := New(Config{Policy: func() *policy.Policy { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s without a policy", dns.RcodeToString[m.Rcode])
	}
	f, err = New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s without Config.Policy", dns.RcodeToString[m.Rcode])
	}
}

func TestRateLimit(t *testing.T) {
	f, clk, _ := newTestFilter(t, Config{RatePerIdentity: 10, Burst: 5}, testView())
	rcodes := func(from net.Addr, n int) (refused int) {
		for range n {
			if ask(t, f, from, "pacs.nhs.internal", dns.TypeA).Rcode == dns.RcodeRefused {
				refused++
			}
		}
		return refused
	}
	if r := rcodes(aliceAddr, 8); r != 3 {
		t.Errorf("burst of 8 over a bucket of 5: %d refused, want 3", r)
	}
	if r := rcodes(bobAddr, 5); r != 0 {
		t.Errorf("bob starved by alice: %d refused", r)
	}
	clk.advance(200 * time.Millisecond) // two tokens at 10/s
	if r := rcodes(aliceAddr, 3); r != 1 {
		t.Errorf("after 200ms: %d of 3 refused, want 1", r)
	}
	clk.advance(time.Hour)
	if r := rcodes(aliceAddr, 6); r != 1 {
		t.Errorf("after a long pause: %d of 6 refused, want 1 (bucket caps at burst)", r)
	}
}

func TestQueryLog(t *testing.T) {
	f, _, audit := newTestFilter(t, Config{QueryLog: true}, testView())
	ask(t, f, aliceAddr, "pacs.nhs.internal", dns.TypeAAAA)
	ask(t, f, bobAddr, "pacs.nhs.internal", dns.TypeA)
	ask(t, f, evilAddr, "pacs.nhs.internal", dns.TypeA) // no identity: no audit event
	ev := audit.events(t)
	if len(ev) != 2 {
		t.Fatalf("events %v", ev)
	}
	want := []map[string]any{
		{"msg": "dns.query", "identity": "alice", "site": "leeds", "qname": "pacs.nhs.internal", "qtype": "AAAA", "rcode": "NOERROR"},
		{"msg": "dns.query", "identity": "bob", "site": "york", "qname": "pacs.nhs.internal", "qtype": "A", "rcode": "NXDOMAIN"},
	}
	for i := range want {
		for k, v := range want[i] {
			if ev[i][k] != v {
				t.Errorf("event %d: %s = %v, want %v", i, k, ev[i][k], v)
			}
		}
		if _, ok := ev[i]["rule"]; ok {
			t.Errorf("event %d has a rule", i)
		}
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	up := testnet.NewDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for i := range 40 {
			m.Answer = append(m.Answer, mustRR("%s 300 IN A 93.184.216.%d", r.Question[0].Name, i+1))
		}
		m.Compress = true // about 700 bytes: more than 512, less than 1232
		w.WriteMsg(m)
	})
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	r := new(dns.Msg)
	r.SetQuestion("big.example.com.", dns.TypeA)
	r.SetEdns0(4096, false)
	m := exchange(t, f, aliceAddr, r)
	if m.IsEdns0() == nil || m.Truncated || len(m.Answer) != 40 {
		t.Errorf("EDNS client: opt %v tc %v answers %d", m.IsEdns0(), m.Truncated, len(m.Answer))
	}
	r.Extra = nil
	m = exchange(t, f, aliceAddr, r)
	if m.IsEdns0() != nil || !m.Truncated {
		t.Errorf("plain client: opt %v tc %v", m.IsEdns0(), m.Truncated)
	}
	if b, _ := m.Pack(); len(b) > dns.MinMsgSize {
		t.Errorf("UDP reply of %d bytes", len(b))
	}
}

// panicView panics on every question, as a broken policy might.
type panicView struct{ *fakeView }

func (panicView) ServiceByName(string) *policy.Service { panic("boom") }

func TestPanicRecovered(t *testing.T) {
	f, _, _ := newTestFilter(t, Config{}, panicView{testView()})
	if m := ask(t, f, aliceAddr, "pacs.nhs.internal", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s after a panic", dns.RcodeToString[m.Rcode])
	}
}

func TestServe(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	v := testView()
	// The filter listens on loopback; queries come from 127.0.0.1, so make
	// that alice's address.
	v.ids[0].Address = netip.MustParseAddr("127.0.0.1")
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, v)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc, l) }()
	for _, c := range []struct{ net, addr string }{{"udp", pc.LocalAddr().String()}, {"tcp", l.Addr().String()}} {
		// The sockets listen already: a question waits for the server
		// to come up rather than fail.
		cl := &dns.Client{Net: c.net, Timeout: 5 * time.Second}
		r := new(dns.Msg)
		r.SetQuestion("pacs.nhs.internal.", dns.TypeA)
		m, _, err := cl.Exchange(r, c.addr)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("%s: %v %v", c.net, m, err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := f.Serve(context.Background(), nil, nil); err == nil || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("Serve without listeners: %v", err)
	}
}

func TestServeNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	f, _, _ := newTestFilter(t, Config{}, testView())
	for range 3 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Serve(ctx, pc, l) }()
		cancel() // possibly before the servers started
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	testwait.Goroutines(t, 2*time.Second, before)
}
