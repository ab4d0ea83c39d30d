package dnsfilter

import (
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/policy"
)

// A quarantined identity gets answers only for the services of
// [quarantine] allow that it may reach; everything else is REFUSED and
// never forwarded. Another identity is untouched, and release restores.
func TestQuarantineStage(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	v := testView()
	v.quarantineAllow = map[string]bool{"pacs": true}
	var aliceQuarantined atomic.Bool
	aliceQuarantined.Store(true)
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr},
		Quarantined: func(id *policy.Identity) bool { return id.Name == "alice" && aliceQuarantined.Load() }}, v)
	for _, tc := range []struct {
		who, name string
		rcode     int
		answers   int
	}{
		{"alice", "pacs.nhs.internal", dns.RcodeSuccess, 1},  // listed: stays reachable
		{"alice", "pacs.leeds.example", dns.RcodeSuccess, 1}, // its extra name too
		{"alice", "pacs6.nhs.internal", dns.RcodeRefused, 0}, // reachable by rule, not listed
		{"alice", "www.example.org", dns.RcodeRefused, 0},    // nothing forwarded
		{"alice", "nope.nhs.internal", dns.RcodeRefused, 0},  // no such service
		{"bob", "pacs.nhs.internal", dns.RcodeNameError, 0},  // listed, but no rule for bob (not quarantined anyway)
		{"bob", "www.example.org", dns.RcodeSuccess, 1},      // another identity forwards as usual
	} {
		from := aliceAddr
		if tc.who == "bob" {
			from = bobAddr
		}
		m := ask(t, f, from, tc.name, dns.TypeA)
		if m.Rcode != tc.rcode || len(m.Answer) != tc.answers {
			t.Errorf("%s %s: %s with %d answers, want %s with %d", tc.who, tc.name,
				dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[tc.rcode], tc.answers)
		}
	}
	if n := up.Queries.Load(); n != 1 {
		t.Errorf("%d queries forwarded, want only bob's", n)
	}
	aliceQuarantined.Store(false)
	if m := ask(t, f, aliceAddr, "pacs6.nhs.internal", dns.TypeAAAA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("after release: %s", dns.RcodeToString[m.Rcode])
	}
}
