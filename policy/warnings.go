package policy

import "strings"

// reachWarnings finds what is valid but surprising: rules that can never
// match, identities no rule lets reach anything, services no rule reaches.
// It runs after compile.
func (b *builder) reachWarnings(p *Policy) []Problem {
	saved := b.warnings
	b.warnings = nil
	homed := map[string]int{}
	for _, id := range p.identities {
		homed[id.Site]++
	}
	for i, s := range b.ruleSpecs {
		e := b.ruleElems[i]
		for _, st := range s.sites {
			if homed[st] == 0 {
				e.warnf("from", "site:%s has no identities, so this part of from matches nothing", st)
			}
		}
		if s.rule.Ports == nil {
			continue
		}
		// A rule whose ports a listed service does not offer grants or
		// denies nothing there.
		anyOffered := false
		var missing []string
		for _, sid := range s.svcs {
			svc := p.serviceByID(sid)
			if len(intersectRanges(s.rule.Ports, append(append([]PortRange(nil), svc.Ports...), icmpRange))) > 0 {
				anyOffered = true
			} else {
				missing = append(missing, svc.Name)
			}
		}
		if s.toAll {
			for _, svc := range p.services {
				if len(intersectRanges(s.rule.Ports, append(append([]PortRange(nil), svc.Ports...), icmpRange))) > 0 {
					anyOffered = true
					break
				}
			}
		}
		switch {
		case !anyOffered:
			e.warnf("ports", "can never match: no service it names offers %s", rangesString(s.rule.Ports))
		case len(missing) > 0:
			e.warnf("ports", "%s offer(s) none of %s, so the rule does nothing there", strings.Join(missing, ", "), rangesString(s.rule.Ports))
		}
	}
	d := &p.dec
	reached := make([]uint64, d.words)
	for _, id := range p.identities {
		row := d.reach[id.ID*d.words : (id.ID+1)*d.words]
		some := false
		for w, bits := range row {
			reached[w] |= bits
			some = some || bits != 0
		}
		if !some && !p.reachesConsole(id) {
			b.idElems[id.ID].warnf("", "no rule lets it reach any service")
		}
	}
	for _, svc := range p.services {
		if reached[svc.ID/64]&(1<<(uint(svc.ID)%64)) == 0 {
			b.svcElems[svc.ID].warnf("", "no rule lets any identity reach it")
		}
	}
	out := b.warnings
	b.warnings = saved
	return out
}
