package dnsfilter

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// TestRateLimitedLogSuppressed floods from alice for 25 seconds, 20
// queries every 100ms at 10/s: refused queries are not logged one by one
// but counted, one dns.ratelimited line per interval, and every refused
// query is in some line's count once alice asks again after the flood.
func TestRateLimitedLogSuppressed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		audit := &auditBuf{}
		v := testView()
		f, err := newFilter(Config{RatePerIdentity: 10, Burst: 5, QueryLog: true, Audit: audit.logger()},
			func() View { return v }, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		refused, allowed := 0, 0
		for time.Since(start) < 25*time.Second {
			for range 20 {
				if ask(t, f, aliceAddr, "pacs.nhs.internal", dns.TypeA).Rcode == dns.RcodeRefused {
					refused++
				} else {
					allowed++
				}
			}
			if m := ask(t, f, bobAddr, "pacs.nhs.internal", dns.TypeAAAA); m.Rcode == dns.RcodeRefused {
				t.Fatal("bob refused while alice floods")
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(rateLogInterval)
		if m := ask(t, f, aliceAddr, "pacs.nhs.internal", dns.TypeA); m.Rcode != dns.RcodeSuccess {
			t.Fatalf("after the flood: %s", dns.RcodeToString[m.Rcode])
		}
		allowed++

		var lines, suppressed, aliceQueries int
		for _, ev := range audit.events(t) {
			switch {
			case ev["msg"] == "dns.ratelimited":
				lines++
				suppressed += int(ev["suppressed"].(float64))
				for k, want := range map[string]string{"identity": "alice", "site": "leeds", "qname": "pacs.nhs.internal",
					"qtype": "A", "rcode": "REFUSED", "interval": "10s"} {
					if ev[k] != want {
						t.Errorf("dns.ratelimited %s = %v, want %s", k, ev[k], want)
					}
				}
			case ev["msg"] == "dns.query" && ev["identity"] == "alice":
				aliceQueries++
				if ev["rcode"] != "NOERROR" {
					t.Errorf("refused query logged one by one: %v", ev)
				}
			}
		}
		if refused < 400 || aliceQueries != allowed {
			t.Errorf("%d refused, %d allowed, %d dns.query lines for alice", refused, allowed, aliceQueries)
		}
		// At the first refusal, at 10s and 20s, and the tail after the flood.
		if lines != 4 || suppressed != refused {
			t.Errorf("%d dns.ratelimited lines counting %d, want 4 counting %d", lines, suppressed, refused)
		}
	})
}
