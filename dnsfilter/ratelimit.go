package dnsfilter

import (
	"sync"
	"time"
)

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
	tokens  float64
	last    time.Time
	limited bool // the last query was refused
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[string]*bucket)}
}

// allow takes a token from identity's bucket and reports whether there was
// one, and, when there was not, whether this is the first refusal since the
// last query allowed (so that a flood is logged once, not per query).
func (l *limiter) allow(identity string, now time.Time) (ok, first bool) {
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
	if b.tokens < 1 {
		first = !b.limited
		b.limited = true
		return false, first
	}
	b.tokens--
	b.limited = false
	return true, false
}
