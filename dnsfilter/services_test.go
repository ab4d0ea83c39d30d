package dnsfilter

import (
	"bytes"
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
)

func TestServiceStage(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	for _, tc := range []struct {
		who   string
		name  string
		qtype uint16
		rcode int
		want  []string
		soa   bool
	}{
		{"alice", "pacs.nhs.internal", dns.TypeA, dns.RcodeSuccess, []string{"100.81.0.10"}, false},
		{"alice", "PACS.NHS.Internal.", dns.TypeA, dns.RcodeSuccess, []string{"100.81.0.10"}, false},
		{"alice", "pacs.leeds.example", dns.TypeA, dns.RcodeSuccess, []string{"100.81.0.10"}, false},
		{"alice", "pacs.nhs.internal", dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"alice", "pacs.nhs.internal", dns.TypeMX, dns.RcodeSuccess, nil, true},
		{"alice", "pacs6.nhs.internal", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00:81::10"}, false},
		{"alice", "pacs6.nhs.internal", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"alice", "nope.nhs.internal", dns.TypeA, dns.RcodeNameError, nil, true},
		{"alice", "a.b.nhs.internal", dns.TypeA, dns.RcodeNameError, nil, true},
		{"alice", "nhs.internal", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"alice", "nhs-web.nhs.internal", dns.TypeA, dns.RcodeNameError, nil, true}, // egress-only: no name
		{"bob", "pacs.nhs.internal", dns.TypeA, dns.RcodeNameError, nil, true},
		{"bob", "pacs.nhs.internal", dns.TypeAAAA, dns.RcodeNameError, nil, true},
		{"bob", "pacs.leeds.example", dns.TypeA, dns.RcodeNameError, nil, false},
	} {
		from := aliceAddr
		if tc.who == "bob" {
			from = bobAddr
		}
		m := ask(t, f, from, tc.name, tc.qtype)
		got := answers(m)
		if m.Rcode != tc.rcode || len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
			t.Errorf("%s %s %s: %s %v, want %s %v", tc.who, tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[m.Rcode], got, dns.RcodeToString[tc.rcode], tc.want)
		}
		if !m.Authoritative {
			t.Errorf("%s %s: not authoritative", tc.who, tc.name)
		}
		if hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA; hasSOA != tc.soa {
			t.Errorf("%s %s: authority %v", tc.who, tc.name, m.Ns)
		}
		if len(m.Answer) > 0 && (m.Answer[0].Header().Ttl != serviceTTL || m.Answer[0].Header().Name != m.Question[0].Name) {
			t.Errorf("%s %s: answer %v", tc.who, tc.name, m.Answer[0])
		}
	}
	if n := up.Queries.Load(); n != 0 {
		t.Errorf("%d overlay queries forwarded", n)
	}
}

// An unreachable service is indistinguishable from a name that does not
// exist.
func TestServiceHiddenLikeNonexistent(t *testing.T) {
	f, _, _ := newTestFilter(t, Config{}, testView())
	wire := func(name string) []byte {
		r := new(dns.Msg)
		r.SetQuestion(name, dns.TypeA)
		r.Id = 1
		b, err := exchange(t, f, bobAddr, r).Pack()
		if err != nil {
			t.Fatal(err)
		}
		return bytes.ReplaceAll(b, []byte("pacs"), []byte("nope")) // the question differs only in the name
	}
	if h, n := wire("pacs.nhs.internal."), wire("nope.nhs.internal."); !bytes.Equal(h, n) {
		t.Errorf("hidden service reply differs from a nonexistent name:\n%x\n%x", h, n)
	}
}

func TestReverseAddr(t *testing.T) {
	for name, want := range map[string]string{
		"10.0.81.100.in-addr.arpa": "100.81.0.10",
		"0.0.0.0.in-addr.arpa":     "0.0.0.0",
		"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.8.0.0.0.0.d.f.ip6.arpa": "fd00:81::10",
		"81.100.in-addr.arpa":            "",
		"256.0.81.100.in-addr.arpa":      "",
		"01.0.81.100.in-addr.arpa":       "",
		"x.10.0.81.100.in-addr.arpa":     "",
		"10.0.81.100.in-addr.arpa.extra": "",
		"g.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.8.0.0.0.0.d.f.ip6.arpa": "",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.8.0.0.0.0.d.f.ip6.arpa":     "",
	} {
		a, ok := reverseAddr(name)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("reverseAddr(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestReverseOverlayNotForwarded(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	for _, name := range []string{"10.0.81.100.in-addr.arpa", "10.1.80.100.in-addr.arpa"} {
		if m := ask(t, f, aliceAddr, name, dns.TypePTR); m.Rcode != dns.RcodeNameError || !m.Authoritative {
			t.Errorf("%s: %v", name, m)
		}
	}
	ask(t, f, aliceAddr, "34.216.184.93.in-addr.arpa", dns.TypePTR)
	if n := up.Queries.Load(); n != 1 {
		t.Errorf("%d upstream queries, want 1 (only the public address)", n)
	}
}
