package policy

import (
	"fmt"
	"strings"
	"time"
)

// explain turns a decision into a sentence. It may scan the rules: it
// answers a person, not a packet.
func (p *Policy) explain(d Decision, id *Identity, svc *Service, port uint16, proto Proto, t time.Time) string {
	if id != nil {
		if own := p.ownIdentity(id); own != nil {
			id = own
		}
	}
	if svc != nil {
		if own := p.ownService(svc); own != nil {
			svc = own
		}
	}
	if proto == ProtoICMP {
		port = 0
	}
	flow := PortRange{Proto: proto, Lo: port, Hi: port}.String()
	switch d.Reason {
	case ReasonUnknownIdentity:
		if id == nil {
			return "deny: the source is no known identity"
		}
		return fmt.Sprintf("deny: %q is not an identity of this policy", id.Name)
	case ReasonNoService:
		if svc == nil {
			return "deny: the destination is no service of this policy"
		}
		if p.ownService(svc) == nil {
			return fmt.Sprintf("deny: %q is not a service of this policy", svc.Name)
		}
		return fmt.Sprintf("deny: %s does not offer %s (it offers %s)", svc.Name, flow, offered(svc))
	}
	r := p.ruleByName(d.Rule)
	switch d.Reason {
	case ReasonNone:
		s := fmt.Sprintf("allow: rule %q lets %s reach %s on %s%s", d.Rule, p.matchingFrom(r, id), svc.Name, flow, windowNote(r))
		if !d.Expires.IsZero() {
			s += fmt.Sprintf(", allowed until %s%s", d.Expires.Format(time.RFC3339), reasonNote(r))
		}
		return s
	case ReasonExpired:
		return fmt.Sprintf("deny: rule %q let %s reach %s on %s until %s; it has expired%s", d.Rule, p.matchingFrom(r, id), svc.Name, flow, d.Expires.Format(time.RFC3339), reasonNote(r))
	case ReasonDenyRule:
		s := fmt.Sprintf("deny: rule %q denies %s reaching %s on %s%s", d.Rule, p.matchingFrom(r, id), svc.Name, flow, windowNote(r))
		if d.Audit {
			s += "; the rule is in roll-out (audit = true), so the gateway lets the flow through and logs it as flow.audit"
		}
		return s
	case ReasonOutsideTimeWindow:
		s := fmt.Sprintf("deny: rule %q lets %s reach %s on %s only %s", d.Rule, p.matchingFrom(r, id), svc.Name, flow, r.When)
		if spec := p.specOf(r); spec != nil && spec.window != nil {
			s += fmt.Sprintf(", and it is %s there", t.In(spec.window.loc).Format("Mon 15:04 MST"))
		}
		return s
	}
	s := fmt.Sprintf("deny: no rule lets %s reach %s on %s", describeIdentity(id), svc.Name, flow)
	return s + p.nearest(id, svc)
}

func offered(svc *Service) string {
	if len(svc.Ports) == 0 {
		return "icmp only"
	}
	return rangesString(svc.Ports)
}

func windowNote(r *Rule) string {
	if r == nil || r.When == "" {
		return ""
	}
	return " (" + r.When + ")"
}

func reasonNote(r *Rule) string {
	if r == nil || r.Reason == "" {
		return ""
	}
	return fmt.Sprintf(" (reason: %s)", r.Reason)
}

func describeIdentity(id *Identity) string {
	if len(id.Groups) == 0 {
		return id.Name
	}
	return fmt.Sprintf("%s (groups %s)", id.Name, strings.Join(id.Groups, ", "))
}

func (p *Policy) ruleByName(name string) *Rule {
	for _, r := range p.rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func (p *Policy) specOf(r *Rule) *ruleSpec {
	for _, s := range p.dec.specs {
		if s.rule == r {
			return s
		}
	}
	return nil
}

// fromCovers reports whether the `from` entry f names id.
func fromCovers(f string, id *Identity) bool {
	switch {
	case f == "*":
		return true
	case strings.HasPrefix(f, "group:"):
		return contains(id.Groups, f[len("group:"):])
	case strings.HasPrefix(f, "site:"):
		return id.Site == f[len("site:"):]
	}
	return f == id.Name
}

// matchingFrom returns the first `from` entry of r that names id.
func (p *Policy) matchingFrom(r *Rule, id *Identity) string {
	if r == nil {
		return id.Name
	}
	for _, f := range r.From {
		if fromCovers(f, id) {
			return f
		}
	}
	return strings.Join(r.From, ", ")
}

// nearest names the allow rule that came closest, in this order: one that
// names both the identity and the service (so the port was wrong), one
// that names the identity and "*", one that names the service, one that
// names "*", one that names the identity; ties go to the smallest name.
func (p *Policy) nearest(id *Identity, svc *Service) string {
	var best *Rule
	bestScore := 0
	for _, r := range p.rules {
		if r.Action != Allow {
			continue
		}
		from := false
		for _, f := range r.From {
			from = from || fromCovers(f, id)
		}
		explicit, star := false, false
		for _, t := range r.To {
			explicit = explicit || t == svc.Name
			star = star || t == "*"
		}
		score := 0
		switch {
		case from && explicit:
			score = 6
		case from && star:
			score = 5
		case explicit:
			score = 4
		case star:
			score = 3
		case from:
			score = 2
		}
		if score > bestScore || (score == bestScore && score > 0 && r.Name < best.Name) {
			best, bestScore = r, score
		}
	}
	if best == nil {
		return fmt.Sprintf("; no allow rule names %s or %s", id.Name, svc.Name)
	}
	ports := "all of its ports"
	if len(best.Ports) > 0 {
		ports = rangesString(best.Ports)
	}
	switch bestScore {
	case 6, 5:
		return fmt.Sprintf("; nearest rule %q allows %s on %s%s", best.Name, p.matchingFrom(best, id), ports, windowNote(best))
	case 4, 3:
		return fmt.Sprintf("; nearest rule %q allows %s to %s on %s", best.Name, strings.Join(best.From, ", "), svc.Name, ports)
	}
	return fmt.Sprintf("; nearest rule %q allows %s to %s on %s", best.Name, p.matchingFrom(best, id), strings.Join(best.To, ", "), ports)
}
