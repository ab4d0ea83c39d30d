package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/policy"
)

// Filter is the DNS server of one gateway. Create it with New; it is safe
// for concurrent use.
type Filter struct {
	cfg     Config
	view    func() View
	now     func() time.Time
	stages  []stage
	fwd     *forwarder
	egress  *egressTable
	limiter *limiter
	blocks  atomic.Pointer[blocklist]
	stats   counters
}

// counters are the Filter's running totals; see Stats.
type counters struct {
	queries, refused, blocked, servfail atomic.Uint64
	cacheHits, cacheMisses              atomic.Uint64
	upstreamErrors, egressLearned       atomic.Uint64
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
}

// Stats returns the running totals. Safe for concurrent use.
func (f *Filter) Stats() Stats {
	s := &f.stats
	return Stats{
		Queries: s.queries.Load(), Refused: s.refused.Load(), Blocked: s.blocked.Load(),
		ServFail: s.servfail.Load(), CacheHits: s.cacheHits.Load(), CacheMisses: s.cacheMisses.Load(),
		UpstreamErrors: s.upstreamErrors.Load(), EgressLearned: s.egressLearned.Load(),
		CacheEntries: f.fwd.cache.len(),
	}
}

// stage is one step of the chain; see the package documentation.
type stage interface {
	// answer returns the reply to q, or nil to pass q to the next stage.
	answer(ctx context.Context, q *query) *dns.Msg
}

// query is one admitted question.
type query struct {
	id    *policy.Identity
	view  View
	name  string // lower case, no trailing dot
	qtype uint16
	req   *dns.Msg

	blocked string // set by the block stage: the entry that matched
}

// New builds a Filter, loading the blocklists. It does no network I/O.
func New(cfg Config) (*Filter, error) {
	return newFilter(cfg, policyView(cfg.Policy), time.Now)
}

// newFilter is New with the policy read through a View and an injectable
// clock, for tests.
func newFilter(cfg Config, view func() View, now func() time.Time) (*Filter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	allow := new(nameSet)
	for _, p := range cfg.AllowInternal {
		if err := allow.add(canonical(p)); err != nil {
			return nil, fmt.Errorf("dnsfilter: allow_internal: %w", err)
		}
	}
	bl, err := loadBlocklists(cfg.Blocklists)
	if err != nil {
		return nil, err
	}
	f := &Filter{
		cfg:     cfg,
		view:    view,
		now:     now,
		egress:  newEgressTable(cfg.EgressTTLMin, cfg.EgressTTLMax, cfg.MaxEgressPerIdentity),
		limiter: newLimiter(cfg.RatePerIdentity, cfg.Burst),
	}
	f.fwd = newForwarder(cfg, allow, now, &f.stats)
	f.blocks.Store(bl)
	f.stages = []stage{
		blockStage{list: f.blocks.Load},
		serviceStage{},
		forwardStage{fwd: f.fwd, learn: f.learn},
	}
	return f, nil
}

// ReloadBlocklists replaces the blocklists with the given files. On error
// the lists in use stay as they were. The cache and the learned egress
// addresses are kept.
func (f *Filter) ReloadBlocklists(paths []string) error {
	bl, err := loadBlocklists(paths)
	if err != nil {
		return err
	}
	f.blocks.Store(bl)
	return nil
}

// ServeDNS answers one query; it implements dns.Handler. The identity is
// the source address of the query; see the package documentation for the
// whole contract.
func (f *Filter) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	written := false
	defer func() {
		if p := recover(); p != nil {
			f.cfg.Logger.Error("dns handler panic", "panic", p, "stack", string(debug.Stack()))
			if r != nil && !written {
				m := new(dns.Msg)
				m.SetRcode(r, dns.RcodeServerFailure)
				m.Question = nil // whatever it was, it may be what broke us
				w.WriteMsg(m)
			}
		}
	}()
	if r == nil || r.Response {
		return // never answer answers
	}
	reply, q := f.resolve(w.RemoteAddr(), r)
	finish(reply, r, isUDP(w))
	f.count(reply, q)
	written = true
	if err := w.WriteMsg(reply); err != nil {
		f.cfg.Logger.Debug("dns write failed", "err", err)
	}
	if q != nil {
		f.logQuery(q, reply.Rcode)
	}
}

func (f *Filter) count(reply *dns.Msg, q *query) {
	s := &f.stats
	s.queries.Add(1)
	switch {
	case q != nil && q.blocked != "":
		s.blocked.Add(1)
	case reply.Rcode == dns.RcodeRefused:
		s.refused.Add(1)
	case reply.Rcode == dns.RcodeServerFailure:
		s.servfail.Add(1)
	}
}

// resolve admits r from remote and runs the stages. It returns the reply,
// and the query when r was admitted (for the audit log).
func (f *Filter) resolve(remote net.Addr, r *dns.Msg) (*dns.Msg, *query) {
	view := f.view()
	var id *policy.Identity
	if view != nil {
		if a, ok := addrOf(remote); ok {
			id = view.IdentityByAddr(a)
		}
	}
	if id == nil {
		f.cfg.Logger.Debug("dns query from unknown source", "src", remote)
		return rcode(r, dns.RcodeRefused), nil
	}
	q := &query{id: id, view: view, req: r}
	if len(r.Question) == 1 {
		q.name, q.qtype = canonical(r.Question[0].Name), r.Question[0].Qtype
	}
	if !f.limiter.allow(id.Name, f.now()) {
		return rcode(r, dns.RcodeRefused), q
	}
	switch {
	case r.Opcode != dns.OpcodeQuery:
		return rcode(r, dns.RcodeNotImplemented), q
	case len(r.Question) != 1:
		return rcode(r, dns.RcodeFormatError), q
	case r.Question[0].Qclass != dns.ClassINET:
		return rcode(r, dns.RcodeRefused), q
	}
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		m := rcode(r, dns.RcodeBadVers)
		m.SetEdns0(upstreamUDPSize, false)
		return m, q
	}
	switch q.qtype {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		return rcode(r, dns.RcodeRefused), q
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.deadline())
	defer cancel()
	for _, s := range f.stages {
		if m := s.answer(ctx, q); m != nil {
			return m, q
		}
	}
	return rcode(r, dns.RcodeServerFailure), q // unreachable: forward always answers
}

// deadline bounds one query: every upstream tried over UDP and TCP.
func (f *Filter) deadline() time.Duration {
	return f.cfg.Timeout * time.Duration(2*max(1, len(f.cfg.Upstreams)))
}

func rcode(r *dns.Msg, code int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, code)
	m.RecursionAvailable = true
	return m
}

// finish adds an OPT record when the request had one and truncates UDP
// replies to what the client can take.
func finish(m, req *dns.Msg, udp bool) {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(dns.MinMsgSize, min(int(opt.UDPSize()), upstreamUDPSize))
		if m.IsEdns0() == nil {
			m.SetEdns0(upstreamUDPSize, false)
		}
	}
	if udp {
		m.Truncate(size)
	}
}

func isUDP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.UDPAddr)
	return ok
}

// addrOf returns the IP of a UDP or TCP address.
func addrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// learn records the addresses of a forwarded answer for the egress
// services the identity can reach whose patterns match the question.
func (f *Filter) learn(q *query, reply *dns.Msg) {
	svcs := q.view.EgressServices(q.name)
	if len(svcs) == 0 {
		return
	}
	names := make([]string, 0, len(svcs))
	for _, s := range svcs {
		if q.view.CanReach(q.id, s) {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	now := f.now()
	for _, rr := range chainAddrs(reply.Answer, reply.Question[0].Name) {
		a, _ := rrAddr(rr)
		f.egress.learn(q.id.Name, names, q.name, a, time.Duration(rr.Header().Ttl)*time.Second, now)
		f.stats.egressLearned.Add(1)
	}
}

// maxChain bounds the CNAME chain followed from the question name.
const maxChain = 8

// chainAddrs returns the A and AAAA records of answer that belong to qname,
// directly or through a chain of CNAMEs that starts at qname; records for
// other names are ignored.
func chainAddrs(answer []dns.RR, qname string) []dns.RR {
	var out []dns.RR
	name := qname
	for range maxChain {
		next := ""
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			if c, ok := rr.(*dns.CNAME); ok {
				next = c.Target
			} else if a, ok := rrAddr(rr); ok && a.IsValid() {
				out = append(out, rr)
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return out
}

// EgressService returns the FQDN egress service through which id may reach
// dst, because id looked up a name matching the service's patterns and the
// answer held dst, not longer ago than the answer's TTL (clamped to
// [EgressTTLMin, EgressTTLMax]). When several services qualify, one that
// offers port/proto is preferred. nil when none does. Cheap (one map
// lookup per level, no allocation for up to four grants) and safe for
// concurrent use; the flow handler then asks policy.Decide as for any
// service.
func (f *Filter) EgressService(id *policy.Identity, dst netip.Addr, port uint16, proto policy.Proto) *policy.Service {
	if id == nil {
		return nil
	}
	view := f.view()
	if view == nil {
		return nil
	}
	var buf [4]grant
	gs := f.egress.grants(id.Name, dst.Unmap(), f.now(), buf[:0])
	var found *policy.Service
	for _, g := range gs {
		svc := view.Service(g.service)
		if svc == nil || !matchesEgress(svc, g.qname) {
			continue
		}
		if offers(svc, port, proto) {
			return svc
		}
		if found == nil {
			found = svc
		}
	}
	return found
}

func matchesEgress(svc *policy.Service, qname string) bool {
	for _, p := range svc.Egress {
		if policy.MatchFQDN(p, qname) {
			return true
		}
	}
	return false
}

func offers(svc *policy.Service, port uint16, proto policy.Proto) bool {
	for _, r := range svc.Ports {
		if r.Contains(port, proto) {
			return true
		}
	}
	return false
}

// logQuery writes dns.block (always) or dns.query (when QueryLog is set).
func (f *Filter) logQuery(q *query, code int) {
	event := "dns.query"
	if q.blocked != "" {
		event = "dns.block"
	} else if !f.cfg.QueryLog {
		return
	}
	attrs := [...]slog.Attr{
		slog.String("identity", q.id.Name),
		slog.String("site", q.id.Site),
		slog.String("qname", q.name),
		slog.String("qtype", typeString(q.qtype)),
		slog.String("rcode", dns.RcodeToString[code]),
		slog.String("rule", q.blocked),
	}
	n := len(attrs)
	if q.blocked == "" {
		n--
	}
	f.cfg.Audit.LogAttrs(context.Background(), slog.LevelInfo, event, attrs[:n]...)
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

// Serve answers DNS on pc (UDP) and l (TCP), either of which may be nil,
// until ctx is done or a server fails. It closes pc and l before it
// returns, and returns nil when ctx ended it.
func (f *Filter) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	var servers []*dns.Server
	if pc != nil {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: f, UDPSize: dns.DefaultMsgSize})
	}
	if l != nil {
		servers = append(servers, &dns.Server{Listener: l, Handler: f,
			ReadTimeout: f.cfg.Timeout, IdleTimeout: func() time.Duration { return 10 * time.Second }})
	}
	if len(servers) == 0 {
		return errors.New("dnsfilter: Serve: no listener")
	}
	errc := make(chan error, len(servers))
	started := make([]chan struct{}, len(servers))
	exited := make([]chan struct{}, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		started[i], exited[i] = make(chan struct{}), make(chan struct{})
		s.NotifyStartedFunc = func() { close(started[i]) }
		wg.Go(func() {
			defer close(exited[i])
			errc <- s.ActivateAndServe()
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err == nil {
			err = errors.New("dnsfilter: DNS server stopped")
		}
	}
	for i, s := range servers {
		select {
		case <-started[i]:
			s.Shutdown()
		case <-exited[i]: // failed before it started; nothing to stop
		}
	}
	wg.Wait()
	if pc != nil {
		pc.Close()
	}
	if l != nil {
		l.Close()
	}
	return err
}
