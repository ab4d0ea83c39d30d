package dnsfilter

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/policy"
)

// egressTable records, per identity, the addresses that DNS answers for
// FQDN egress services handed it, and until when. Identities and services
// are recorded by name so that the table survives a policy reload; a
// lookup checks the grant against the current policy.
//
// Memory: one map entry and one FIFO slot per address and identity, bounded
// by limit per identity. Safe for concurrent use.
type egressTable struct {
	limit int

	mu   sync.RWMutex
	sets map[string]*egressSet // by identity name
}

// egressSet is one identity's learned addresses.
type egressSet struct {
	mu    sync.Mutex
	addrs map[netip.Addr]*egressEntry
	fifo  []fifoItem // learn order, oldest first; items whose seq is stale are skipped
	seq   uint64
}

type egressEntry struct {
	seq    uint64 // of the latest learn; matches its live FIFO item
	grants []grant
}

// grant allows an address for one service, because of one question.
type grant struct {
	service string // service name
	qname   string // the name asked, matched against the service's patterns
	expires time.Time
}

type fifoItem struct {
	addr netip.Addr
	seq  uint64
}

func newEgressTable(limit int) *egressTable {
	return &egressTable{limit: limit, sets: make(map[string]*egressSet)}
}

func (t *egressTable) set(identity string, create bool) *egressSet {
	t.mu.RLock()
	s := t.sets[identity]
	t.mu.RUnlock()
	if s != nil || !create {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s = t.sets[identity]; s == nil {
		s = &egressSet{addrs: make(map[netip.Addr]*egressEntry)}
		t.sets[identity] = s
	}
	return s
}

// learn allows addr to identity for each of services until now+ttl.
func (t *egressTable) learn(identity string, services []string, qname string, addr netip.Addr, ttl time.Duration, now time.Time) {
	if t.limit <= 0 || len(services) == 0 {
		return
	}
	exp := now.Add(ttl)
	s := t.set(identity, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e := s.addrs[addr]
	if e == nil {
		e = &egressEntry{}
		s.addrs[addr] = e
	}
	e.seq = s.seq
	s.fifo = append(s.fifo, fifoItem{addr, s.seq})
	for _, svc := range services {
		e.grant(svc, qname, exp)
	}
	s.evictLocked(t.limit, now)
}

func (e *egressEntry) grant(service, qname string, exp time.Time) {
	for i := range e.grants {
		if g := &e.grants[i]; g.service == service {
			if exp.After(g.expires) {
				g.expires = exp
			}
			g.qname = qname
			return
		}
	}
	e.grants = append(e.grants, grant{service, qname, exp})
}

// evictLocked forgets the oldest addresses while there are more than limit,
// drops expired addresses from the front, and compacts the FIFO when stale
// items dominate it.
func (s *egressSet) evictLocked(limit int, now time.Time) {
pop:
	for len(s.fifo) > 0 {
		it := s.fifo[0]
		e := s.addrs[it.addr]
		switch {
		case e == nil || e.seq != it.seq: // stale: the address was learned again later
		case len(s.addrs) > limit || e.expired(now):
			delete(s.addrs, it.addr)
		default:
			break pop
		}
		s.fifo[0] = fifoItem{}
		s.fifo = s.fifo[1:]
	}
	if len(s.fifo) > 2*limit+16 {
		live := make([]fifoItem, 0, len(s.addrs))
		for _, it := range s.fifo {
			if e := s.addrs[it.addr]; e != nil && e.seq == it.seq {
				live = append(live, it)
			}
		}
		s.fifo = live
	}
}

func (e *egressEntry) expired(now time.Time) bool {
	for _, g := range e.grants {
		if now.Before(g.expires) {
			return false
		}
	}
	return true
}

// grants appends to buf the unexpired grants of addr to identity.
func (t *egressTable) grants(identity string, addr netip.Addr, now time.Time, buf []grant) []grant {
	s := t.set(identity, false)
	if s == nil {
		return buf
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.addrs[addr]
	if e == nil {
		return buf
	}
	for _, g := range e.grants {
		if now.Before(g.expires) {
			buf = append(buf, g)
		}
	}
	return buf
}

// len is the number of addresses learned for identity, expired ones
// included until they are evicted.
func (t *egressTable) len(identity string) int {
	s := t.set(identity, false)
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.addrs)
}

// learn records the addresses of a forwarded answer for the egress
// services whose patterns match the question and that the identity can
// reach, or would reach but for audit (the gateway in audit mode, or only
// deny rules with audit = true in the way): then its flows are decided,
// let through and logged flow.audit, rather than denied for want of a
// service.
func (f *Filter) learn(q *query, reply *dns.Msg) {
	svcs := q.view.EgressServices(q.name)
	if len(svcs) == 0 {
		return
	}
	names := make([]string, 0, len(svcs))
	for _, s := range svcs {
		if q.view.CanReach(q.id, s) || f.cfg.Auditing() || q.view.ReachDecision(q.id, s).Audit {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	now := f.now()
	live := f.settings.Load()
	for _, rr := range chainAddrs(reply.Answer, reply.Question[0].Name) {
		a, _ := rrAddr(rr)
		ttl := min(max(time.Duration(rr.Header().Ttl)*time.Second, live.egressTTLMin), live.egressTTLMax)
		f.egress.learn(q.id.Name, names, q.name, a, ttl, now)
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
		if svc.Offers(port, proto) {
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
		if dnsname.Match(p, qname) {
			return true
		}
	}
	return false
}
