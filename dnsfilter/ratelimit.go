package dnsfilter

import (
	"sync"
	"time"
)

// rateLogInterval is how often at most one identity's refused queries are
// reported (dns.ratelimited) while it stays over its rate.
const rateLogInterval = 10 * time.Second

// limiter is a token bucket per identity: rate tokens a second, at most
// burst saved up. Identities come from the policy, so the map is bounded by
// the number of identities ever configured. Safe for concurrent use.
type limiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket // by identity name
}

type bucket struct {
	tokens float64
	last   time.Time
	// The queries refused since the last report, the last of them, and
	// when the last report was made.
	suppressed int
	qname      string
	qtype      uint16
	reported   time.Time
}

// rateReport is what dns.ratelimited says: suppressed refused queries, the
// last of which asked qname/qtype. suppressed == 0: nothing to report.
type rateReport struct {
	suppressed int
	qname      string
	qtype      uint16
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[string]*bucket)}
}

// allow takes a token from identity's bucket for a question and reports
// whether there was one. A refusal is counted, not reported one by one:
// the report (suppressed > 0) comes with the first refusal, then with the
// first query, refused or not, at least rateLogInterval after the last
// report. So a flood writes one line per interval, and the count of its
// last interval comes with the identity's next query.
func (l *limiter) allow(identity, qname string, qtype uint16, now time.Time) (ok bool, r rateReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[identity]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[identity] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	ok = b.tokens >= 1
	if ok {
		b.tokens--
	} else {
		b.suppressed++
		b.qname, b.qtype = qname, qtype
	}
	if b.suppressed > 0 && (b.reported.IsZero() || now.Sub(b.reported) >= rateLogInterval) {
		r = rateReport{suppressed: b.suppressed, qname: b.qname, qtype: b.qtype}
		b.suppressed, b.reported = 0, now
	}
	return ok, r
}
