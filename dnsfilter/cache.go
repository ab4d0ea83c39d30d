package dnsfilter

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache TTL bounds: positive answers are kept at most maxCacheTTL, negative
// ones (NXDOMAIN, or NOERROR without an answer) at most negativeTTL, which
// is also their TTL when the upstream sent no SOA.
const (
	maxCacheTTL = time.Hour
	negativeTTL = 60 * time.Second
)

// cacheKey is a question: lower-case name without the trailing dot, type,
// class.
type cacheKey struct {
	name  string
	qtype uint16
	class uint16
}

// cacheEntry is an upstream reply as cached: msg is never modified after it
// is stored (replies copy its records), stored is when it arrived.
type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache is a bounded LRU of upstream replies. Safe for concurrent use.
type cache struct {
	size int

	mu    sync.Mutex
	items map[cacheKey]*list.Element // of *cacheEntry
	lru   list.List                  // front: most recently used
	gen   uint64                     // flushes so far
}

func newCache(size int) *cache {
	return &cache{size: size, items: make(map[cacheKey]*list.Element)}
}

// get returns the entry for k, or nil when there is none or it expired.
func (c *cache) get(k cacheKey, now time.Time) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[k]
	if el == nil {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, k)
		return nil
	}
	c.lru.MoveToFront(el)
	return e
}

// put stores e, evicting the least recently used entry when full. An entry
// fetched before a flush (gen is no longer the generation) is dropped.
func (c *cache) put(e *cacheEntry, gen uint64) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if el := c.items[e.key]; el != nil {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
	c.items[e.key] = c.lru.PushFront(e)
}

// generation counts the flushes; put takes the one its fetch began in.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// flush empties the cache.
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.items)
	c.lru.Init()
	c.gen++
}

// len is the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheTTL is how long an upstream reply may be cached; 0 means not at all.
// Positive: the least TTL of the answer section. Negative (NXDOMAIN, or
// NOERROR without an answer): the SOA's TTL or MINIMUM, whichever is less
// (RFC 2308), capped at negativeTTL, and negativeTTL without an SOA. Other
// rcodes are not cached.
func cacheTTL(m *dns.Msg) time.Duration {
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl := uint32(maxCacheTTL / time.Second)
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return time.Duration(ttl) * time.Second
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		for _, rr := range m.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				ttl := time.Duration(min(s.Hdr.Ttl, s.Minttl)) * time.Second
				return min(ttl, negativeTTL)
			}
		}
		return negativeTTL
	}
	return 0
}

// reply builds the answer to req from a cached upstream reply: req's ID,
// flags and question, the cached records with their TTLs reduced by the
// time the entry has been cached.
func (e *cacheEntry) reply(req *dns.Msg, now time.Time) *dns.Msg {
	age := uint32(max(0, now.Sub(e.stored)/time.Second))
	m := new(dns.Msg)
	m.SetReply(req)
	m.Rcode = e.msg.Rcode
	m.RecursionAvailable = true
	m.Answer = agedCopy(e.msg.Answer, age)
	m.Ns = agedCopy(e.msg.Ns, age)
	m.Extra = agedCopy(e.msg.Extra, age)
	return m
}

// agedCopy copies rrs without OPT records, each TTL reduced by age.
func agedCopy(rrs []dns.RR, age uint32) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		c := dns.Copy(rr)
		h := c.Header()
		if h.Ttl > age {
			h.Ttl -= age
		} else {
			h.Ttl = 0
		}
		out = append(out, c)
	}
	return out
}
