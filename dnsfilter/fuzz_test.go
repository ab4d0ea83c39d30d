package dnsfilter

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/policy"
)

// FuzzHandler sends any wire message that unpacks (the miekg server
// answers the rest FORMERR itself) through ServeDNS, from a known and an
// unknown identity, over UDP and TCP: no panic, no hang, at most one reply,
// and a reply that packs.
func FuzzHandler(f *testing.F) {
	seed := func(mod func(m *dns.Msg)) {
		m := new(dns.Msg)
		m.SetQuestion("pacs.nhs.internal.", dns.TypeA)
		mod(m)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
	}
	seed(func(*dns.Msg) {})                                              // a service, answered
	seed(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA })        // NODATA
	seed(func(m *dns.Msg) { m.Question[0].Name = "www.nhs.uk." })        // forwarded, egress learned
	seed(func(m *dns.Msg) { m.Question[0].Name = "x.pixel.example." })   // blocked
	seed(func(m *dns.Msg) { m.Question[0].Name = "." })                  // the root
	seed(func(m *dns.Msg) { m.Question[0].Name = `a\.b\000c.example.` }) // escapes
	seed(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeANY })
	seed(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	seed(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	seed(func(m *dns.Msg) { m.Question = nil })
	seed(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate })
	seed(func(m *dns.Msg) { m.SetEdns0(65535, true) })
	seed(func(m *dns.Msg) { m.SetEdns0(0, false); m.Extra[0].(*dns.OPT).Hdr.Ttl = 0x00ff0000 }) // EDNS version 255
	seed(func(m *dns.Msg) { m.Response = true })
	seed(func(m *dns.Msg) { m.Answer = []dns.RR{mustRR("pacs.nhs.internal. 1 IN A 1.2.3.4")} })
	f.Add([]byte{}, uint8(1))

	up := testnet.NewDNS(f, testnet.AnswerA("93.184.216.34", 300))
	list := strings.Join([]string{"*.pixel.example", "0.0.0.0 ads.example"}, "\n")
	path := f.TempDir() + "/list.txt"
	if err := writeFileErr(path, list); err != nil {
		f.Fatal(err)
	}
	filter, _, _ := newTestFilter(f, Config{
		Upstreams:       []string{up.Addr},
		Blocklists:      []string{path},
		Timeout:         200 * time.Millisecond,
		RatePerIdentity: 1e9,
		Burst:           1e9,
		QueryLog:        true,
	}, testView())

	f.Fuzz(func(t *testing.T, wire []byte, how uint8) {
		r := new(dns.Msg)
		if err := r.Unpack(wire); err != nil {
			return
		}
		var remote net.Addr = aliceAddr
		switch how % 4 {
		case 1:
			remote = evilAddr
		case 2:
			remote = &net.TCPAddr{IP: aliceAddr.IP, Port: 1}
		case 3:
			remote = bobAddr
		}
		w := &fakeWriter{remote: remote}
		done := make(chan struct{})
		go func() {
			defer close(done)
			filter.ServeDNS(w, r)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeDNS hung on %x", wire)
		}
		if len(w.msgs) > 1 {
			t.Fatalf("%d replies", len(w.msgs))
		}
		if len(w.msgs) == 0 && !r.Response {
			t.Fatalf("no reply to a query %v", r)
		}
	})
}

// FuzzBlocklistLine: any line parses or fails cleanly, and every name or
// pattern on a line that parses is blocked: a name itself, a pattern one
// and two labels below its suffix ("*." only one).
func FuzzBlocklistLine(f *testing.F) {
	for _, s := range []string{"ads.example", "0.0.0.0 a.example b.example", "*.x.example # c", "**.y.example",
		"::1 localhost", "a b", "||x^", "127.0.0.1", "*.", "Ex.Ample."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		bl := &blocklist{}
		if err := bl.parseLine(line); err != nil {
			return
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Fields(line) {
			p := dnsname.Canonical(f)
			if _, err := netip.ParseAddr(f); err == nil || hostsBoilerplate[p] {
				continue
			}
			if err := dnsname.CheckPattern(p); err != nil {
				t.Fatalf("%q: accepted %q: %v", line, p, err)
			}
			wildcard, suffix := dnsname.Split(p)
			var names []string
			switch wildcard {
			case "":
				names = []string{p}
			case "*":
				names = []string{"x." + suffix}
			case "**":
				names = []string{"x." + suffix, "y.x." + suffix}
			}
			for _, n := range names {
				if bl.names.Match(n) == "" {
					t.Fatalf("%q: %q is not blocked", line, n)
				}
			}
		}
	})
}

// FuzzUpstreamReply feeds any wire message that unpacks as the reply of an
// upstream, to the question it holds (www.nhs.uk A when none), through
// what the forwarder does with replies: rebinding strip, cache TTL, the
// cache, the reply built from it after some time, and egress learning on
// the way back through ServeDNS. The reply packs; nothing the guard
// forbids survives (unless the name is allow_internal, then only aliases
// into the trust are checked); cache lifetimes stay within their bounds
// and TTLs only ever go down with age.
func FuzzUpstreamReply(f *testing.F) {
	seed := func(qname string, qtype uint16, rcode int, rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		m.Response, m.Rcode = true, rcode
		for _, s := range rrs {
			rr := mustRR("%s", s)
			if _, ok := rr.(*dns.SOA); ok {
				m.Ns = append(m.Ns, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(0))
	}
	seed("www.nhs.uk.", dns.TypeA, dns.RcodeSuccess, "www.nhs.uk. 300 IN CNAME cdn.example.net.", "cdn.example.net. 60 IN A 93.184.216.34")
	seed("a.example.com.", dns.TypeA, dns.RcodeSuccess, "a.example.com. 300 IN CNAME ehr.nhs.internal.", "ehr.nhs.internal. 300 IN A 93.184.216.34")
	seed("a.example.com.", dns.TypeA, dns.RcodeSuccess, "a.example.com. 300 IN DNAME nhs.internal.")
	seed("a.example.com.", dns.TypeA, dns.RcodeSuccess, "a.example.com. 300 IN CNAME b.example.com.", "b.example.com. 300 IN CNAME a.example.com.")
	seed("a.example.com.", dns.TypeAAAA, dns.RcodeSuccess, "a.example.com. 300 IN AAAA 64:ff9b::a00:1", "a.example.com. 300 IN AAAA 2002:c0a8:101::1",
		"a.example.com. 300 IN AAAA 64:ff9b:1:a:50:1::")
	seed("a.example.com.", dns.TypeA, dns.RcodeSuccess, "a.example.com. 4294967295 IN A 198.51.100.7", "a.example.com. 0 IN A 10.0.0.1")
	seed("nx.example.com.", dns.TypeA, dns.RcodeNameError, "example.com. 3600 IN SOA ns.example.com. h.example.com. 1 2 3 4 4294967295")
	seed("app.corp.example.", dns.TypeA, dns.RcodeSuccess, "app.corp.example. 300 IN A 10.0.0.1", "app.corp.example. 300 IN CNAME pacs.leeds.example.")
	seed("x.nhs.uk.", dns.TypeA, dns.RcodeSuccess, "x.nhs.uk. 300 IN A 100.81.0.10", "x.nhs.uk. 300 IN TXT \"hi\"")

	v := testView()
	v.svcs[0].Endpoints = []policy.Endpoint{{Prefix: netip.MustParsePrefix("198.51.100.7/32")}, {Prefix: netip.MustParsePrefix("203.0.113.0/28")}}
	filter, clk, _ := newTestFilter(f, Config{AllowInternal: []string{"**.corp.example"}, RatePerIdentity: 1e9, Burst: 1e9}, v)
	var view View = v

	f.Fuzz(func(t *testing.T, wire []byte, age uint16) {
		r := new(dns.Msg)
		if err := r.Unpack(wire); err != nil {
			return
		}
		if len(r.Question) == 0 {
			r.Question = []dns.Question{{Name: "www.nhs.uk.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
		}
		q := r.Question[0]
		if checkReply(q, r) != nil {
			return // the forwarder takes nothing else (exchange)
		}
		key := cacheKey{name: dnsname.Canonical(q.Name), qtype: q.Qtype, class: q.Qclass}
		orig := map[dns.RR]uint32{} // TTLs as received
		for _, rr := range append(append(append([]dns.RR(nil), r.Answer...), r.Ns...), r.Extra...) {
			orig[rr] = rr.Header().Ttl
		}
		ttl := cacheTTL(r)
		if ttl < 0 || ttl > maxCacheTTL {
			t.Fatalf("cache TTL %v", ttl)
		}
		allow := filter.settings.Load().allow
		e := filter.fwd.store(key, r, view, allow, filter.fwd.cache.generation())
		if got := e.expires.Sub(e.stored); got != ttl {
			t.Fatalf("entry lives %v, TTL %v", got, ttl)
		}
		if cached := filter.fwd.cache.get(key, e.stored); (cached == e) != (ttl > 0) {
			t.Fatalf("TTL %v: cached %v", ttl, cached != nil)
		}
		req := new(dns.Msg)
		req.SetQuestion(q.Name, q.Qtype)
		req.Question[0].Qclass = q.Qclass
		reply := e.reply(req, e.stored.Add(time.Duration(age)*time.Second))
		if _, err := reply.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, reply)
		}
		g := filter.fwd.guardFor(view)
		allowed := allow.Match(key.name) != ""
		for _, rr := range append(append([]dns.RR(nil), reply.Answer...), reply.Extra...) {
			if rr.Header().Rrtype == dns.TypeOPT {
				t.Fatalf("OPT copied from the cache: %v", rr)
			}
			if g.forbidden(rr, allowed) {
				t.Fatalf("forbidden record kept: %v", rr)
			}
		}
		// Each record of the reply is the stored one, its TTL less the age.
		for _, sec := range [][2][]dns.RR{{e.msg.Answer, reply.Answer}, {e.msg.Ns, reply.Ns}, {e.msg.Extra, reply.Extra}} {
			var stored []dns.RR
			for _, rr := range sec[0] {
				if ttl, ok := orig[rr]; !ok || ttl != rr.Header().Ttl {
					t.Fatalf("stored record not as received: %v", rr)
				}
				if rr.Header().Rrtype != dns.TypeOPT {
					stored = append(stored, rr)
				}
			}
			if len(stored) != len(sec[1]) {
				t.Fatalf("%d records stored, %d in the reply", len(stored), len(sec[1]))
			}
			for i, rr := range sec[1] {
				if want := stored[i].Header().Ttl - min(stored[i].Header().Ttl, uint32(age)); rr.Header().Ttl != want {
					t.Fatalf("TTL %d after %ds, stored %d: %v", rr.Header().Ttl, age, stored[i].Header().Ttl, rr)
				}
			}
		}
		// The same question from a client, answered from the cache when it
		// was cached, egress learning on the way.
		clk.advance(time.Duration(age) * time.Second)
		w := &fakeWriter{remote: aliceAddr}
		filter.ServeDNS(w, req)
		if len(w.msgs) != 1 {
			t.Fatalf("%d replies", len(w.msgs))
		}
		filter.fwd.cache = newCache(DefaultCacheSize) // the next input starts afresh
	})
}
