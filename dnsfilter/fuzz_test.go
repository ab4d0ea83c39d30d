package dnsfilter

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
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

	up := newUpstream(f, answerA("93.184.216.34", 300))
	list := strings.Join([]string{"*.pixel.example", "0.0.0.0 ads.example"}, "\n")
	path := f.TempDir() + "/list.txt"
	if err := writeFileErr(path, list); err != nil {
		f.Fatal(err)
	}
	filter, _, _ := newTestFilter(f, Config{
		Upstreams:       []string{up.addr},
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

// FuzzBlocklistLine: any line parses or fails cleanly, and whatever it
// adds is well-formed and matches itself.
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
		for name := range bl.names.exact {
			if bl.names.match(name) != name || checkPattern(name) != nil {
				t.Fatalf("%q: entry %q", line, name)
			}
		}
		for suffix, e := range bl.names.one {
			if bl.names.match("x."+suffix) != e {
				t.Fatalf("%q: pattern %q does not match x.%s", line, e, suffix)
			}
		}
	})
}
