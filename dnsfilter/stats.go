package dnsfilter

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// counters are the Filter's running totals; see Stats.
type counters struct {
	queries, refused, blocked, servfail atomic.Uint64
	cacheHits, cacheMisses              atomic.Uint64
	upstreamErrors, egressLearned       atomic.Uint64
	dropped                             atomic.Uint64 // UDP datagrams not admitted (admit.go)
	// rcodes counts answers by response code (the 4-bit header codes).
	rcodes [16]atomic.Uint64
}

// Stats are running totals since New, for metrics.
type Stats struct {
	Queries        uint64 // answered, of known identities or not
	Refused        uint64 // answered REFUSED: unknown source, rate limit, ANY...
	Blocked        uint64 // answered NXDOMAIN by a blocklist
	ServFail       uint64 // answered SERVFAIL
	CacheHits      uint64 // forwarded questions answered from the cache
	CacheMisses    uint64 // forwarded questions that needed an upstream
	UpstreamErrors uint64 // failed tries of one upstream
	EgressLearned  uint64 // addresses recorded for FQDN egress (refreshes included)
	CacheEntries   int    // questions in the cache now, expired ones included
	// Dropped counts UDP datagrams dropped unanswered by admission: a
	// source far over its rate limit, or too many queries at once.
	Dropped uint64
	// Rcodes counts answers by response code, e.g. Rcodes["NXDOMAIN"].
	Rcodes map[string]uint64
}

// Stats returns the running totals. Safe for concurrent use.
func (f *Filter) Stats() Stats {
	s := &f.stats
	return Stats{
		Queries: s.queries.Load(), Refused: s.refused.Load(), Blocked: s.blocked.Load(),
		ServFail: s.servfail.Load(), CacheHits: s.cacheHits.Load(), CacheMisses: s.cacheMisses.Load(),
		UpstreamErrors: s.upstreamErrors.Load(), EgressLearned: s.egressLearned.Load(),
		CacheEntries: f.fwd.cache.len(), Dropped: s.dropped.Load(),
		Rcodes: s.rcodeCounts(),
	}
}

func (s *counters) rcodeCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for code := range s.rcodes {
		if n := s.rcodes[code].Load(); n > 0 {
			m[dns.RcodeToString[code]] = n
		}
	}
	return m
}

func (f *Filter) count(reply *dns.Msg, q *query) {
	s := &f.stats
	s.queries.Add(1)
	s.rcodes[reply.Rcode&0xf].Add(1)
	switch {
	case q != nil && q.blocked != "":
		s.blocked.Add(1)
	case reply.Rcode == dns.RcodeRefused:
		s.refused.Add(1)
	case reply.Rcode == dns.RcodeServerFailure:
		s.servfail.Add(1)
	}
}
