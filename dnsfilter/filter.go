package dnsfilter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
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
	// settings are the parts of Config a reload may change (SetSettings).
	settings atomic.Pointer[settings]
	stats    counters
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

	limited bool             // refused by the rate limit: not logged one by one
	blocked string           // set by the block stage: the entry that matched
	audit   *policy.Decision // set by the services stage: why policy would hide the answer
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
	live, err := compileSettings(cfg)
	if err != nil {
		return nil, err
	}
	bl, err := loadBlocklists(cfg.Blocklists)
	if err != nil {
		return nil, err
	}
	f := &Filter{
		cfg:     cfg,
		view:    view,
		now:     now,
		egress:  newEgressTable(cfg.MaxEgressPerIdentity),
		limiter: newLimiter(cfg.RatePerIdentity, cfg.Burst),
	}
	f.settings.Store(live)
	f.fwd = newForwarder(cfg, &f.settings, now, &f.stats)
	f.blocks.Store(bl)
	f.stages = []stage{
		quarantineStage{quarantined: func(q *query) bool { return cfg.Quarantined(q.id) }},
		blockStage{list: f.blocks.Load},
		serviceStage{auditing: cfg.Auditing, self: cfg.Self},
		forwardStage{fwd: f.fwd, learn: f.learn},
	}
	return f, nil
}

// Blocklists are blocklist files read and ready to use; LoadBlocklists
// makes them, SetBlocklists puts them in force. A reload reads them before
// it changes anything, and puts them in force only with the rest.
type Blocklists struct{ bl *blocklist }

// LoadBlocklists reads the blocklist files; errors name file:line.
func LoadBlocklists(paths []string) (Blocklists, error) {
	bl, err := loadBlocklists(paths)
	return Blocklists{bl}, err
}

// SetBlocklists puts b in force for the next query.
func (f *Filter) SetBlocklists(b Blocklists) { f.blocks.Store(b.bl) }

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
		q.name, q.qtype = dnsname.Canonical(r.Question[0].Name), r.Question[0].Qtype
	}
	ok, report := f.limiter.allow(id.Name, q.name, q.qtype, f.now())
	if report.suppressed > 0 {
		f.logRateLimited(id, report)
	}
	if !ok {
		q.limited = true
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
	return f.cfg.Timeout * time.Duration(2*max(1, len(f.settings.Load().upstreams)))
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
		if a != nil {
			ip, ok := netip.AddrFromSlice(a.IP)
			return ip.Unmap(), ok
		}
		return netip.Addr{}, false
	case *net.TCPAddr:
		if a != nil {
			ip, ok := netip.AddrFromSlice(a.IP)
			return ip.Unmap(), ok
		}
		return netip.Addr{}, false
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// logQuery writes dns.block or dns.audit (always) or dns.query (when
// QueryLog is set); a rate-limited query is only counted (logRateLimited).
func (f *Filter) logQuery(q *query, code int) {
	if q.limited {
		return
	}
	var buf [7]slog.Attr
	attrs := append(buf[:0],
		slog.String("identity", q.id.Name),
		slog.String("site", q.id.Site),
		slog.String("qname", q.name),
		slog.String("qtype", typeString(q.qtype)),
		slog.String("rcode", dns.RcodeToString[code]),
	)
	event := "dns.query"
	switch {
	case q.blocked != "":
		event = "dns.block"
		attrs = append(attrs, slog.String("rule", q.blocked))
	case q.audit != nil:
		event = "dns.audit"
		if q.audit.Rule != "" {
			attrs = append(attrs, slog.String("rule", q.audit.Rule))
		}
		attrs = append(attrs, slog.String("reason", q.audit.Reason.String()))
	case !f.settings.Load().queryLog:
		return
	}
	f.cfg.Audit.LogAttrs(context.Background(), slog.LevelInfo, event, attrs...)
}

// logRateLimited writes dns.ratelimited: how many of id's queries the rate
// limit refused since the last such line, and the last of them.
func (f *Filter) logRateLimited(id *policy.Identity, r rateReport) {
	f.cfg.Audit.LogAttrs(context.Background(), slog.LevelInfo, "dns.ratelimited",
		slog.String("identity", id.Name),
		slog.String("site", id.Site),
		slog.String("qname", r.qname),
		slog.String("qtype", typeString(r.qtype)),
		slog.String("rcode", dns.RcodeToString[dns.RcodeRefused]),
		slog.Int("suppressed", r.suppressed),
		slog.String("interval", rateLogInterval.String()),
	)
	f.cfg.Logger.Warn("dns rate limit reached; refusing queries", "identity", id.Name,
		"refused", r.suppressed, "rate", f.cfg.RatePerIdentity, "burst", f.cfg.Burst)
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
