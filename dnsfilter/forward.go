package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
)

// upstreamUDPSize is the EDNS buffer size advertised to upstreams (the DNS
// flag day 2020 value: no IP fragmentation).
const upstreamUDPSize = 1232

// maxInflight bounds the upstream exchanges in flight at once, over all
// identities; a question beyond it gets SERVFAIL at once rather than one
// more socket.
const maxInflight = 1024

var (
	errNoUpstream   = errors.New("dnsfilter: no upstream configured")
	errOverloaded   = errors.New("dnsfilter: too many upstream exchanges in flight")
	errIdentityBusy = errors.New("dnsfilter: identity has too many upstream exchanges in flight")
)

// forwarder resolves questions through the upstreams and the cache; see
// the package documentation for what it strips and caches.
type forwarder struct {
	settings  *atomic.Pointer[settings] // the Filter's: upstreams and allow_internal
	timeout   time.Duration
	udp, tcp  *dns.Client
	cache     *cache
	now       func() time.Time
	log       *slog.Logger
	preferred atomic.Uint32 // index of the upstream tried first
	inflight  chan struct{} // semaphore of maxInflight
	perID     int           // MaxInflightPerIdentity
	stats     *counters
	guard     atomic.Pointer[rebindGuard] // of the policy last seen

	mu    sync.Mutex
	calls map[cacheKey]*call // exchanges in flight, for coalescing
	waits map[string]int     // by identity: questions waiting on an upstream
}

// call is one upstream exchange that concurrent identical questions share.
type call struct {
	done chan struct{}
	e    *cacheEntry
	err  error
}

func newForwarder(cfg Config, live *atomic.Pointer[settings], now func() time.Time, stats *counters) *forwarder {
	return &forwarder{
		settings: live,
		timeout:  cfg.Timeout,
		udp:      &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: upstreamUDPSize},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache:    newCache(cfg.CacheSize),
		now:      now,
		log:      cfg.Logger,
		calls:    make(map[cacheKey]*call),
		waits:    make(map[string]int),
		inflight: make(chan struct{}, maxInflight),
		perID:    cfg.MaxInflightPerIdentity,
		stats:    stats,
	}
}

// forwardStage is the last stage: it always answers.
type forwardStage struct {
	fwd   *forwarder
	learn func(q *query, reply *dns.Msg)
}

func (s forwardStage) answer(ctx context.Context, q *query) *dns.Msg {
	key := cacheKey{name: q.name, qtype: q.qtype, class: q.req.Question[0].Qclass}
	e, err := s.fwd.lookup(ctx, key, q.id.Name, q.view)
	if err != nil {
		s.fwd.log.Debug("dns forward failed", "qname", q.name, "qtype", dns.TypeToString[q.qtype], "err", err)
		m := new(dns.Msg)
		m.SetRcode(q.req, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	m := e.reply(q.req, s.fwd.now())
	if s.learn != nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
		s.learn(q, m)
	}
	return m
}

// lookup answers key from the cache, or from one upstream exchange shared
// by every concurrent identical question. A question that has to wait on
// an upstream counts against its identity's share (errIdentityBusy beyond
// it), whether it leads the exchange or joins one.
func (f *forwarder) lookup(ctx context.Context, key cacheKey, identity string, view View) (*cacheEntry, error) {
	if e := f.cache.get(key, f.now()); e != nil {
		f.stats.cacheHits.Add(1)
		return e, nil
	}
	f.stats.cacheMisses.Add(1)
	f.mu.Lock()
	if f.waits[identity] >= f.perID {
		f.mu.Unlock()
		return nil, errIdentityBusy
	}
	f.waits[identity]++
	defer f.release(identity)
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.e, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()

	c.e, c.err = f.fetch(ctx, key, view)

	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.e, c.err
}

// release ends one of identity's waits on an upstream.
func (f *forwarder) release(identity string) {
	f.mu.Lock()
	if f.waits[identity]--; f.waits[identity] <= 0 {
		delete(f.waits, identity)
	}
	f.mu.Unlock()
}

// fetch asks the upstreams in turn, starting with the one that answered
// last, strips the answer and caches it.
func (f *forwarder) fetch(ctx context.Context, key cacheKey, view View) (*cacheEntry, error) {
	gen := f.cache.generation() // before the settings: see SetSettings
	live := f.settings.Load()
	n := len(live.upstreams)
	if n == 0 {
		return nil, errNoUpstream
	}
	select {
	case f.inflight <- struct{}{}:
		defer func() { <-f.inflight }()
	default:
		return nil, errOverloaded
	}
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.Question = []dns.Question{{Name: dns.Fqdn(key.name), Qtype: key.qtype, Qclass: key.class}}
	m.SetEdns0(upstreamUDPSize, false)

	start := int(f.preferred.Load()) % n
	var errs []error
	for i := range n {
		idx := (start + i) % n
		r, err := f.exchange(ctx, m, live.upstreams[idx])
		if err != nil {
			f.stats.upstreamErrors.Add(1)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if i > 0 && f.preferred.CompareAndSwap(uint32(start), uint32(idx)) {
			f.log.Warn("dns upstream failed over", "from", live.upstreams[start], "to", live.upstreams[idx], "err", errors.Join(errs...))
		}
		return f.store(key, r, view, live.allow, gen), nil
	}
	return nil, errors.Join(errs...)
}

// store strips an upstream reply (see rebindGuard) and caches it for its
// TTL, which is taken before stripping, unless the cache was flushed
// since generation gen (the reply came from upstreams no longer in force).
func (f *forwarder) store(key cacheKey, r *dns.Msg, view View, allow *dnsname.Set, gen uint64) *cacheEntry {
	now := f.now()
	ttl := cacheTTL(r)
	f.guardFor(view).strip(r, allow.Match(key.name) != "")
	e := &cacheEntry{key: key, msg: r, stored: now, expires: now.Add(ttl)}
	if ttl > 0 {
		f.cache.put(e, gen)
	}
	return e
}

// guardFor returns the rebinding guard of view, building it when the
// policy changed since the last one.
func (f *forwarder) guardFor(view View) *rebindGuard {
	if g := f.guard.Load(); g != nil && g.view == view {
		return g
	}
	g := newRebindGuard(view)
	f.guard.Store(g)
	return g
}

// exchange asks one upstream over UDP, and again over TCP when the answer
// was truncated. Each try has its own timeout. Answers other than NOERROR
// and NXDOMAIN, or to another question, are errors.
func (f *forwarder) exchange(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error) {
	r, err := f.try(ctx, f.udp, m, upstream)
	if err == nil && r.Truncated {
		r, err = f.try(ctx, f.tcp, m, upstream)
	}
	if err == nil {
		err = checkReply(m.Question[0], r)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", upstream, err)
	}
	return r, nil
}

// checkReply accepts an upstream reply to q that is NOERROR or NXDOMAIN.
func checkReply(q dns.Question, r *dns.Msg) error {
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return fmt.Errorf("rcode %s", rcodeString(r.Rcode))
	}
	if len(r.Question) != 1 || r.Question[0].Qtype != q.Qtype || r.Question[0].Qclass != q.Qclass ||
		!strings.EqualFold(r.Question[0].Name, q.Name) {
		return errors.New("answer to another question")
	}
	return nil
}

func rcodeString(code int) string {
	if s, ok := dns.RcodeToString[code]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", code)
}

func (f *forwarder) try(ctx context.Context, c *dns.Client, m *dns.Msg, upstream string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, upstream)
	return r, err
}
