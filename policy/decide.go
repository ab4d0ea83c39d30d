package policy

import (
	"sort"
	"time"
)

// Compiled decision tables.
//
// Every identity has a short list of principals: itself, each of its groups,
// its home site, and "*". A rule becomes one entry under each (principal,
// target) pair it names, target being a service or "any service". Decide
// looks up the identity's principals against the service and against "any":
// 2 x (groups + 3) map lookups at most, whatever the number of rules, and no
// allocation. Within a key the entries are few (the rules that name exactly
// that principal and that service).
//
// Rule order never matters: deny beats allow, and when several rules could
// decide, the one reported is chosen by a fixed ranking (for deny, rules
// without audit first, then by name; otherwise by name), so shuffling the
// file changes no decision.
type decideTables struct {
	nIDs, nGroups, nSites int
	principals            [][]uint32 // by Identity.ID
	table                 map[uint64][]entry
	hasAny                []bool     // by principal: entries with target "any service"
	hasSvc                []bool     // by principal: entries with a service target
	targets               [][]uint32 // by principal: the services it has entries for
	rank                  []uint32
	reach                 []uint64 // CanReach bitset: identity ID * words + service ID / 64
	words                 int
	specs                 []*ruleSpec // for explain
}

// anyService is the target of rules with to = "*".
const anyService = 0xffffffff

// entry is one rule under one (principal, target) key.
type entry struct {
	ports  []PortRange // nil: every port the service offers (ICMP included)
	window *timeWindow // nil: always
	rank   uint32      // position of the rule in name order
	allow  bool
	audit  bool
	rule   *Rule
}

func tableKey(principal uint32, target uint32) uint64 {
	return uint64(principal)<<32 | uint64(target)
}

func (e *entry) matches(port uint16, proto Proto) bool {
	if e.ports == nil {
		return true
	}
	for _, r := range e.ports {
		if r.Contains(port, proto) {
			return true
		}
	}
	return false
}

// compile builds the lookups and the decision tables.
func (p *Policy) compile(specs []*ruleSpec) {
	p.buildLookups()
	d := &p.dec
	d.specs = specs
	d.nIDs, d.nGroups, d.nSites = len(p.identities), len(p.groups), len(p.sites)
	groupIdx := make(map[string]int, len(p.groups))
	for i, g := range p.groups {
		groupIdx[g] = i
	}
	siteIdx := make(map[string]int, len(p.sites))
	for i, s := range p.sites {
		siteIdx[s.Name] = i
	}
	star := uint32(d.nIDs + d.nGroups + d.nSites)
	nPrincipals := int(star) + 1
	d.principals = make([][]uint32, len(p.identities))
	flat := make([]uint32, 0, len(p.identities)*3)
	for _, id := range p.identities {
		start := len(flat)
		flat = append(flat, uint32(id.ID))
		for _, g := range id.Groups {
			flat = append(flat, uint32(d.nIDs+groupIdx[g]))
		}
		if si, ok := siteIdx[id.Site]; ok {
			flat = append(flat, uint32(d.nIDs+d.nGroups+si))
		}
		flat = append(flat, star)
		d.principals[id.ID] = flat[start:len(flat):len(flat)]
	}

	// Rank rules by name so that ties are broken the same in any order.
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return specs[order[a]].rule.Name < specs[order[b]].rule.Name })
	d.rank = make([]uint32, len(specs))
	for r, i := range order {
		d.rank[i] = uint32(r)
	}

	d.table = make(map[uint64][]entry, len(specs)*2)
	d.hasAny = make([]bool, nPrincipals)
	d.hasSvc = make([]bool, nPrincipals)
	for i, s := range specs {
		e := entry{ports: s.ports, window: s.window, rank: d.rank[i], allow: s.rule.Action == Allow, audit: s.rule.Audit, rule: s.rule}
		if len(e.ports) == 0 {
			e.ports = nil
		}
		var prins []uint32
		if s.star {
			prins = append(prins, star)
		}
		for _, id := range s.ids {
			prins = append(prins, uint32(id))
		}
		for _, g := range s.groups {
			prins = append(prins, uint32(d.nIDs+groupIdx[g]))
		}
		for _, st := range s.sites {
			prins = append(prins, uint32(d.nIDs+d.nGroups+siteIdx[st]))
		}
		var targets []uint32
		if s.toAll {
			targets = append(targets, anyService)
		}
		for _, sv := range s.svcs {
			targets = append(targets, uint32(sv))
		}
		for _, pr := range uniq32(prins) {
			for _, tg := range uniq32(targets) {
				k := tableKey(pr, tg)
				d.table[k] = append(d.table[k], e)
				if tg == anyService {
					d.hasAny[pr] = true
				} else {
					d.hasSvc[pr] = true
				}
			}
		}
	}
	d.targets = make([][]uint32, nPrincipals)
	for k, list := range d.table {
		sort.Slice(list, func(a, b int) bool { return list[a].rank < list[b].rank })
		d.table[k] = list[:len(list):len(list)]
		if tg := uint32(k); tg != anyService {
			pr := k >> 32
			d.targets[pr] = append(d.targets[pr], tg)
		}
	}
	p.compileReach()
}

func uniq32(s []uint32) []uint32 {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// own returns this policy's identity and service for id and svc, which may
// come from an earlier policy (a flow that began before a reload). nil when
// this policy has no such name.
func (p *Policy) ownIdentity(id *Identity) *Identity {
	if id.ID >= 0 && id.ID < len(p.identities) && p.identities[id.ID] == id {
		return id
	}
	return p.idByName[id.Name]
}

func (p *Policy) ownService(svc *Service) *Service {
	if svc.ID >= 0 && svc.ID < len(p.services) && p.services[svc.ID] == svc {
		return svc
	}
	return p.svcByName[svc.Name]
}

// verdictState accumulates what the matching entries say.
type verdictState struct {
	allow, deny, outside *entry
}

func (v *verdictState) add(list []entry, port uint16, proto Proto, t time.Time) {
	for i := range list {
		e := &list[i]
		if !e.matches(port, proto) {
			continue
		}
		if e.window != nil && !e.window.active(t) {
			if e.allow && (v.outside == nil || e.rank < v.outside.rank) {
				v.outside = e
			}
			continue
		}
		switch {
		case !e.allow:
			if v.deny == nil || denyBefore(e, v.deny) {
				v.deny = e
			}
		case v.allow == nil || e.rank < v.allow.rank:
			v.allow = e
		}
	}
}

// denyBefore ranks deny rules: an enforcing rule reports before an audit
// one (so a flow is really denied when any enforcing rule says so), then by
// name.
func denyBefore(a, b *entry) bool {
	if a.audit != b.audit {
		return !a.audit
	}
	return a.rank < b.rank
}

func (p *Policy) decide(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) Decision {
	if id == nil {
		return Decision{Verdict: Deny, Reason: ReasonUnknownIdentity}
	}
	if svc == nil {
		return Decision{Verdict: Deny, Reason: ReasonNoService}
	}
	if id = p.ownIdentity(id); id == nil {
		return Decision{Verdict: Deny, Reason: ReasonUnknownIdentity}
	}
	if svc = p.ownService(svc); svc == nil {
		return Decision{Verdict: Deny, Reason: ReasonNoService}
	}
	if proto == ProtoICMP {
		port = 0
	}
	if !svc.Offers(port, proto) {
		return Decision{Verdict: Deny, Reason: ReasonNoService}
	}
	v := p.collect(id, svc, port, proto, t)
	switch {
	case v.deny != nil:
		return Decision{Verdict: Deny, Rule: v.deny.rule.Name, Reason: ReasonDenyRule, Audit: v.deny.audit}
	case v.allow != nil:
		return Decision{Verdict: Allow, Rule: v.allow.rule.Name}
	case v.outside != nil:
		return Decision{Verdict: Deny, Rule: v.outside.rule.Name, Reason: ReasonOutsideTimeWindow}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoRule}
}

func (p *Policy) collect(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) verdictState {
	var v verdictState
	d := &p.dec
	sid := uint32(svc.ID)
	for _, pr := range d.principals[id.ID] {
		if d.hasSvc[pr] {
			v.add(d.table[tableKey(pr, sid)], port, proto, t)
		}
		if d.hasAny[pr] {
			v.add(d.table[tableKey(pr, anyService)], port, proto, t)
		}
	}
	return v
}

// canReach reads the bitset computed at load.
func (p *Policy) canReach(id *Identity, svc *Service) bool {
	if id == nil || svc == nil {
		return false
	}
	if id = p.ownIdentity(id); id == nil {
		return false
	}
	if svc = p.ownService(svc); svc == nil {
		return false
	}
	w := p.dec.reach[id.ID*p.dec.words+svc.ID/64]
	return w&(1<<(uint(svc.ID)%64)) != 0
}

// compileReach fills the CanReach bitset: id can reach svc when some port
// the service offers is granted by an allow rule (at some time) and not
// taken away by a deny rule that applies at all times.
func (p *Policy) compileReach() {
	d := &p.dec
	d.words = (len(p.services) + 63) / 64
	d.reach = make([]uint64, len(p.identities)*d.words)
	perSvc := map[uint32][]*entry{}
	var anyEntries []*entry
	for _, id := range p.identities {
		clear(perSvc)
		anyEntries = anyEntries[:0]
		anyAllow := false
		for _, pr := range d.principals[id.ID] {
			if d.hasAny[pr] {
				list := d.table[tableKey(pr, anyService)]
				for i := range list {
					anyEntries = append(anyEntries, &list[i])
					anyAllow = anyAllow || list[i].allow
				}
			}
		}
		// Service-specific entries of this identity's principals. The table
		// is keyed by (principal, service), so walk the services that each
		// principal names: kept per principal at compile time.
		for _, pr := range d.principals[id.ID] {
			if !d.hasSvc[pr] {
				continue
			}
			for _, sid := range d.targets[pr] {
				list := d.table[tableKey(pr, sid)]
				for i := range list {
					perSvc[sid] = append(perSvc[sid], &list[i])
				}
			}
		}
		check := func(svc *Service) {
			if reachable(svc, perSvc[uint32(svc.ID)], anyEntries) {
				d.reach[id.ID*d.words+svc.ID/64] |= 1 << (uint(svc.ID) % 64)
			}
		}
		if anyAllow {
			for _, svc := range p.services {
				check(svc)
			}
			continue
		}
		for sid := range perSvc {
			check(p.services[sid])
		}
	}
}

// icmpRange is the ICMP echo every service offers.
var icmpRange = PortRange{Proto: ProtoICMP}

func reachable(svc *Service, specific, any []*entry) bool {
	offered := append(append([]PortRange(nil), svc.Ports...), icmpRange)
	var allowed, denied []PortRange
	hasDeny := false
	for _, list := range [2][]*entry{specific, any} {
		for _, e := range list {
			if !e.allow && e.window == nil {
				hasDeny = true
			}
		}
	}
	for _, list := range [2][]*entry{specific, any} {
		for _, e := range list {
			var rs []PortRange
			if e.ports == nil {
				rs = offered
			} else {
				rs = intersectRanges(e.ports, offered)
			}
			switch {
			case e.allow && len(rs) > 0 && !hasDeny:
				return true
			case e.allow:
				allowed = append(allowed, rs...)
			case e.window == nil:
				denied = append(denied, rs...)
			}
		}
	}
	return len(subtractRanges(mergeRanges(allowed), mergeRanges(denied))) > 0
}
