package policy

// ReachDecision tells the DNS server whether and why svc's name is hidden
// from id. It is Allow when CanReach(id, svc). Otherwise it is a denial
// with the reason enforcement would give: unknown-identity or no-service
// for a nil or foreign id or svc; no-rule when no allow rule grants id any
// port of svc at any time; deny-rule, naming the deny rule, when allow
// rules grant something that always-active deny rules take away. Audit is
// set when deny rules with audit = true alone hide it: the flows would be
// let through and logged as flow.audit, so DNS answers the name too.
//
// It scans id's rule entries for svc, so it costs more than CanReach and
// may allocate; DNS calls it only for names it would hide.
func (p *Policy) ReachDecision(id *Identity, svc *Service) Decision {
	if p.CanReach(id, svc) {
		return Decision{Verdict: Allow}
	}
	if id == nil || p.ownIdentity(id) == nil {
		return Decision{Verdict: Deny, Reason: ReasonUnknownIdentity}
	}
	if svc == nil || p.ownService(svc) == nil {
		return Decision{Verdict: Deny, Reason: ReasonNoService}
	}
	id, svc = p.ownIdentity(id), p.ownService(svc)
	var specific, anySvc []*entry
	at := &p.dec.bySvc[len(p.dec.bySvc)-1]
	for _, pr := range id.prins {
		list := svc.table.find(pr)
		for i := range list {
			specific = append(specific, &list[i])
		}
		list = at.find(pr)
		for i := range list {
			anySvc = append(anySvc, &list[i])
		}
	}
	keep := func(list []*entry, ok func(*entry) bool) []*entry {
		var out []*entry
		for _, e := range list {
			if ok(e) {
				out = append(out, e)
			}
		}
		return out
	}
	isAllow := func(e *entry) bool { return e.allow }
	if !reachable(svc.Ports, keep(specific, isAllow), keep(anySvc, isAllow), p.dec.compiledAt) {
		return Decision{Verdict: Deny, Reason: ReasonNoRule}
	}
	enforcing := func(e *entry) bool { return e.allow || !e.audit }
	audit := reachable(svc.Ports, keep(specific, enforcing), keep(anySvc, enforcing), p.dec.compiledAt)
	// Name the deny rule of the kind that hides it: an audit one when
	// only those do, else an enforcing one.
	var deny *entry
	for _, list := range [2][]*entry{specific, anySvc} {
		for _, e := range list {
			if e.allow || e.window != nil || e.audit != audit {
				continue
			}
			if deny == nil || denyBefore(e, deny) {
				deny = e
			}
		}
	}
	d := Decision{Verdict: Deny, Reason: ReasonDenyRule, Audit: audit}
	if deny != nil {
		d.Rule = deny.rule.Name
	}
	return d
}
