package policy

import (
	"fmt"
	"strings"
	"time"
)

// Rules and tests: what they name must exist; ports, windows and
// expectations must parse.

func (b *builder) buildRule(p *Policy, e *elem, groups map[string]bool) {
	e.checkKeys(ruleKeys...)
	r := &Rule{Name: e.name(CheckName), Action: Allow}
	spec := &ruleSpec{rule: r, pos: e.at("")}
	switch a := e.str("action"); a {
	case "", "allow":
	case "deny":
		r.Action = Deny
	default:
		e.errorf("action", "action %q must be \"allow\" or \"deny\"", a)
	}
	from := e.strs("from")
	if len(from) == 0 && !e.has("from") {
		e.errorf("", "missing from (identities, group:NAME, site:NAME or \"*\")")
	} else if len(from) == 0 && e.has("from") {
		if a, ok := e.m["from"].([]any); ok && len(a) == 0 {
			e.errorf("from", "from is empty")
		}
	}
	for _, f := range from {
		switch {
		case f == "*":
			spec.star = true
		case strings.HasPrefix(f, "group:"):
			g := f[len("group:"):]
			if !groups[g] {
				hint := didYouMean(g, p.groups)
				if hint == "" {
					hint = " (no identity is in it: declare it in groups = [...] to name it first)"
				}
				e.errorf("from", "unknown group %s%s", Quote(g), hint)
				continue
			}
			spec.groups = append(spec.groups, g)
		case strings.HasPrefix(f, "site:"):
			s := f[len("site:"):]
			if p.siteByName[s] == nil {
				e.errorf("from", "unknown site %s%s", Quote(s), didYouMean(s, names(p.siteByName)))
				continue
			}
			spec.sites = append(spec.sites, s)
		case strings.Contains(f, ":"):
			e.errorf("from", "unknown kind %q in %q (group:NAME, site:NAME, an identity or \"*\")", f[:strings.IndexByte(f, ':')], f)
		default:
			id := p.idByName[f]
			if id == nil {
				e.errorf("from", "unknown identity %s%s", Quote(f), didYouMean(f, names(p.idByName)))
				continue
			}
			spec.ids = append(spec.ids, id.ID)
		}
	}
	r.From = from
	to := e.strs("to")
	if len(to) == 0 && !e.has("to") {
		e.errorf("", "missing to (service names or \"*\")")
	} else if len(to) == 0 && e.has("to") {
		if a, ok := e.m["to"].([]any); ok && len(a) == 0 {
			e.errorf("to", "to is empty")
		}
	}
	for _, t := range to {
		if t == "*" {
			spec.toAll = true
			continue
		}
		svc := p.svcByName[t]
		if svc == nil {
			e.errorf("to", "unknown service %s%s", Quote(t), didYouMean(t, names(p.svcByName)))
			continue
		}
		spec.svcs = append(spec.svcs, svc.ID)
	}
	r.To = to
	var rs []PortRange
	if e.has("ports") {
		ports := e.strs("ports")
		if len(ports) == 0 {
			if a, ok := e.m["ports"].([]any); ok && len(a) == 0 {
				e.errorf("ports", "ports is empty; leave it out to grant all of each service's ports")
			}
		}
		for _, s := range ports {
			pr, err := ParsePortRange(s)
			if err != nil {
				e.errorf("ports", "%v", err)
				continue
			}
			rs = append(rs, pr)
		}
	}
	r.Ports = mergeRanges(rs)
	spec.ports = r.Ports
	if e.has("when") {
		r.When = e.str("when")
		if _, ok := e.m["when"].(string); ok {
			w, err := parseTimeWindow(r.When)
			if err != nil {
				e.errorf("when", "%v", err)
			}
			spec.window = w
		}
	}
	if e.has("expires") {
		r.Expires, _ = e.timeValue("expires")
		if r.expiredAt(b.now) {
			grants := "grants"
			if r.Action == Deny {
				grants = "denies"
			}
			e.warnf("expires", "expired at %s: it %s nothing now; remove it", r.Expires.Format(time.RFC3339), grants)
		}
	}
	r.Reason = e.str("reason")
	if strings.IndexFunc(r.Reason, func(c rune) bool { return c < ' ' || c == 0x7f }) >= 0 {
		e.errorf("reason", "reason %s has a control character; write one line of text", Quote(r.Reason))
		r.Reason = ""
	}
	r.Audit = e.boolean("audit")
	if r.Audit && r.Action == Allow {
		e.errorf("audit", "audit = true is for deny rules (roll-out of a new deny)")
	}
	if r.Name == "" {
		return
	}
	if b.ruleNames[r.Name] {
		e.errorf("name", "duplicate rule name %q", r.Name)
		return
	}
	b.ruleNames[r.Name] = true
	p.rules = append(p.rules, r)
	b.ruleSpecs = append(b.ruleSpecs, spec)
	b.ruleElems = append(b.ruleElems, e)
}

// names lists the keys of m (for did-you-mean; errors only).
func names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (b *builder) buildTest(p *Policy, e *elem) {
	e.checkKeys(testKeys...)
	ts := testSpec{}
	ts.from = e.required("from")
	ts.to = e.required("to")
	if ts.from != "" && ts.to != "" {
		e.label = fmt.Sprintf("test %d (%s -> %s)", e.index+1, ts.from, ts.to)
	}
	if ts.from != "" {
		if ts.id = p.idByName[ts.from]; ts.id == nil {
			e.errorf("from", "unknown identity %q", ts.from)
		}
	}
	if ts.to != "" {
		name, port, hasPort := strings.Cut(ts.to, ":")
		if ts.svc = p.svcByName[name]; ts.svc == nil {
			e.errorf("to", "unknown service %q", name)
		}
		if hasPort {
			r, err := ParsePortRange(port)
			switch {
			case err != nil:
				e.errorf("to", "%v (want SERVICE, SERVICE:PORT[/PROTO] or SERVICE:icmp)", err)
			case r.Lo != r.Hi:
				e.errorf("to", "test one port, not the range %q", port)
			default:
				ts.hasPort, ts.port, ts.proto = true, r.Lo, r.Proto
			}
		}
	}
	switch x := e.required("expect"); x {
	case "":
	case "allow":
		ts.expect = Allow
	case "deny":
		ts.expect = Deny
	default:
		e.errorf("expect", "expect %q must be \"allow\" or \"deny\"", x)
	}
	ts.at, ts.hasAt = e.timeValue("at")
	if e.has("reason") {
		s := e.str("reason")
		r, ok := ParseReason(s)
		switch {
		case !ok:
			e.errorf("reason", "unknown reason %q (no-rule, deny-rule, no-service, unknown-identity, outside-time-window, expired)", s)
		case ts.expect == Allow:
			e.errorf("reason", "an allow has no reason; reason is for expect = \"deny\"")
		}
		ts.reason, ts.hasReason = r, ok
	}
	if e.has("rule") {
		ts.rule, ts.hasRule = e.str("rule"), true
		if ts.rule != "" && !b.ruleNames[ts.rule] {
			e.errorf("rule", "unknown rule %q", ts.rule)
		}
	}
	ts.label = e.label
	at := e.at("")
	ts.prob = Problem{File: b.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf("test %s -> %s expects %s", ts.from, ts.to, ts.expect)}
	p.tests = append(p.tests, ts)
}
