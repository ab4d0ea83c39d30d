package policy

import (
	"sort"
	"time"
)

// Compiled decision tables.
//
// Every identity has a short list of principals: itself, each of its groups,
// its home site, and "*". A rule becomes one entry under each (principal,
// target) pair it names, target being a service or "any service". The
// entries are stored service-major: each service has a small sorted list of
// the principals that some rule names for it, with their entries, and one
// more such list holds the rules to "*". Decide looks up each of the
// identity's principals (groups + 3 of them) by binary search in the
// service's list and in the "*" list: the work depends on the identity's
// groups and on how many principals rules name for that one service, not
// on the number of rules, and it touches a few cache lines. It does not
// allocate.
//
// Rule order never matters: deny beats allow, and when several rules could
// decide, the one reported is chosen by a fixed ranking (for deny, rules
// without audit first, then by name; for allow, the one granting longest,
// then by name; otherwise by name), so shuffling the file changes no
// decision. Expiry is one comparison per matching entry, like a window.
type decideTables struct {
	nIDs, nGroups, nSites int
	principals            [][]uint32       // by Identity.ID, ascending (also in Identity.prins)
	bySvc                 []principalTable // by Service.ID (also in Service.table); the last is "any service"
	rank                  []uint32
	reach                 []uint64 // CanReach bitset: identity ID * words + service ID / 64
	words                 int
	specs                 []*ruleSpec // for explain
	compiledAt            time.Time   // CanReach leaves out allow rules expired by then

	// Used while compiling only.
	table   map[uint64][]entry
	hasAny  []bool     // by principal: entries with target "any service"
	hasSvc  []bool     // by principal: entries with a service target
	targets [][]uint32 // by principal: the services it has entries for
}

// principalTable maps principals to their entries for one target.
type principalTable struct {
	filter  [4]uint64 // bit filterBit(pr) set for each principal present
	prins   []uint32  // ascending
	entries [][]entry
}

// filterBit spreads principal IDs (groups and sites are consecutive) over
// the 256 bits of a table's filter.
func filterBit(pr uint32) uint32 { return (pr * 0x9e3779b1) >> 24 }

// find returns the entries of principal pr, or nil. Most principals are not
// in a given table: the filter rejects them with one test, the others take
// a binary search. No allocation.
func (t *principalTable) find(pr uint32) []entry {
	b := filterBit(pr)
	if t.filter[b>>6]&(1<<(b&63)) == 0 {
		return nil
	}
	lo, hi := 0, len(t.prins)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.prins[m] < pr {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.prins) && t.prins[lo] == pr {
		return t.entries[lo]
	}
	return nil
}

// anyService is the target of rules with to = "*".
const anyService = 0xffffffff

// entry is one rule under one (principal, target) key.
type entry struct {
	ports   []PortRange // nil: every port the service offers (ICMP included)
	window  *timeWindow // nil: always
	expires time.Time   // zero: never
	rank    uint32      // position of the rule in name order
	allow   bool
	audit   bool
	rule    *Rule
}

func tableKey(principal uint32, target uint32) uint64 {
	return uint64(principal)<<32 | uint64(target)
}

// expiredAt reports whether the entry's rule has expired at t.
func (e *entry) expiredAt(t time.Time) bool { return !e.expires.IsZero() && !t.Before(e.expires) }

// alwaysDenies: a deny entry in force at every time (no window, no expiry).
func (e *entry) alwaysDenies() bool { return !e.allow && e.window == nil && e.expires.IsZero() }

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
func (p *Policy) compile(specs []*ruleSpec, now time.Time) {
	p.buildLookups()
	d := &p.dec
	d.specs, d.compiledAt = specs, now
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
		e := entry{ports: s.ports, window: s.window, expires: s.rule.Expires, rank: d.rank[i], allow: s.rule.Action == Allow, audit: s.rule.Audit, rule: s.rule}
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
	d.buildPrincipalTables(len(p.services) + 1) // the console follows the file's services
	p.own()
	p.compileReach()
	d.table, d.hasAny, d.hasSvc, d.targets = nil, nil, nil, nil
}

// buildPrincipalTables lays the table out service-major for Decide.
func (d *decideTables) buildPrincipalTables(nSvc int) {
	d.bySvc = make([]principalTable, nSvc+1)
	keys := make([]uint64, 0, len(d.table))
	for k := range d.table {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] }) // by principal
	for _, k := range keys {
		pr, tg := uint32(k>>32), uint32(k)
		i := int(tg)
		if tg == anyService {
			i = nSvc
		}
		t := &d.bySvc[i]
		t.prins = append(t.prins, pr)
		b := filterBit(pr)
		t.filter[b>>6] |= 1 << (b & 63)
		t.entries = append(t.entries, d.table[k])
	}
}

// own marks identities and services as this policy's and gives them their
// decision data.
func (p *Policy) own() {
	for _, id := range p.identities {
		id.pol, id.prins = p, p.dec.principals[id.ID]
		if len(id.prins) <= len(id.inline) {
			id.nPrins = uint8(copy(id.inline[:], id.prins))
		}
	}
	for _, svc := range append(p.services[:len(p.services):len(p.services)], p.console) {
		svc.pol, svc.table = p, p.dec.bySvc[svc.ID]
		if n := len(svc.Ports); n > 0 && n <= len(svc.fast) {
			svc.nFast = uint8(copy(svc.fast[:], svc.Ports))
		}
	}
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
	if id.pol == p {
		return id
	}
	return p.idByName[id.Name]
}

func (p *Policy) ownService(svc *Service) *Service {
	if svc.pol == p {
		return svc
	}
	return p.svcByName[svc.Name]
}

// verdictState accumulates what the matching entries say.
type verdictState struct {
	allow, deny, outside, expired *entry
}

func (v *verdictState) add(list []entry, port uint16, proto Proto, t time.Time) {
	for i := range list {
		e := &list[i]
		if !e.matches(port, proto) {
			continue
		}
		if e.expiredAt(t) {
			// Grants and denies nothing; an allow that would match now
			// explains the denial.
			if e.allow && (e.window == nil || e.window.active(t)) && (v.expired == nil || e.rank < v.expired.rank) {
				v.expired = e
			}
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
		case v.allow == nil || allowBefore(e, v.allow):
			v.allow = e
		}
	}
}

// allowBefore ranks allow rules: the one that grants longest reports (never
// expiring, else the later expiry), then by name.
func allowBefore(a, b *entry) bool {
	if !a.expires.Equal(b.expires) {
		switch {
		case a.expires.IsZero():
			return true
		case b.expires.IsZero():
			return false
		}
		return a.expires.After(b.expires)
	}
	return a.rank < b.rank
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

// Decide answers whether id may reach svc on port/proto at time t, from
// tables compiled at load: no scan over rules, no allocation. id == nil
// gives unknown-identity; svc == nil gives no-service.
func (p *Policy) Decide(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) Decision {
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
		return Decision{Verdict: Allow, Rule: v.allow.rule.Name, Expires: v.allow.expires}
	case v.expired != nil:
		return Decision{Verdict: Deny, Rule: v.expired.rule.Name, Reason: ReasonExpired, Expires: v.expired.expires}
	case v.outside != nil:
		return Decision{Verdict: Deny, Rule: v.outside.rule.Name, Reason: ReasonOutsideTimeWindow}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoRule}
}

func (p *Policy) collect(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) verdictState {
	var v verdictState
	d := &p.dec
	st, at := &svc.table, &d.bySvc[len(d.bySvc)-1]
	prins := id.prins
	if id.nPrins > 0 {
		prins = id.inline[:id.nPrins]
	}
	for _, pr := range prins {
		if list := st.find(pr); list != nil {
			v.add(list, port, proto, t)
		}
		if list := at.find(pr); list != nil && svc != p.console { // "*" is not the console
			v.add(list, port, proto, t)
		}
	}
	return v
}
