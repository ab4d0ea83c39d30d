package policy

import (
	"fmt"
	"strings"
	"time"
)

// Quarantine. A gateway may quarantine an identity at run time (the
// gateway keeps that set; the policy does not). The policy says only what
// stays reachable in quarantine, for remediation:
//
//	[quarantine]
//	allow = ["patch-server", "edr"]
//
// A quarantined identity's flow to a service outside that list is denied
// with reason quarantined, whatever the rules say. A flow to a listed
// service is decided by the rules as usual: quarantine never grants
// anything, so the rules must already let the identity reach the service,
// and deny rules still win.

var quarantineKeys = []string{"allow"}

// buildQuarantine reads the optional [quarantine] table.
func (b *builder) buildQuarantine(p *Policy, raw map[string]any) {
	e, _ := b.table(raw, "quarantine")
	if e == nil {
		return
	}
	e.checkKeys(quarantineKeys...)
	p.quarantineAllow = make([]bool, len(p.services))
	for _, name := range e.strs("allow") {
		svc := p.svcByName[name]
		if svc == nil {
			e.errorf("allow", "unknown service %s%s", Quote(name), didYouMean(name, names(p.svcByName)))
			continue
		}
		if p.quarantineAllow[svc.ID] {
			e.errorf("allow", "service %s listed twice", Quote(name))
		}
		p.quarantineAllow[svc.ID] = true
	}
}

// QuarantineAllows reports whether svc stays reachable for a quarantined
// identity ([quarantine] allow), as far as the rules allow it.
func (p *Policy) QuarantineAllows(svc *Service) bool {
	if svc == nil {
		return false
	}
	if svc = p.ownService(svc); svc == nil || svc.ID >= len(p.quarantineAllow) {
		return false
	}
	return p.quarantineAllow[svc.ID]
}

// QuarantineAllowed lists the services of [quarantine] allow, in file
// order of the services.
func (p *Policy) QuarantineAllowed() []string {
	var out []string
	for _, svc := range p.services {
		if p.QuarantineAllows(svc) {
			out = append(out, svc.Name)
		}
	}
	return out
}

// Quarantined turns d, decided for a quarantined identity's flow to svc,
// into what quarantine leaves of it: d itself for a service that stays
// reachable (the rules decided it, deny rules included), and for a flow
// with no identity or no service (nothing to quarantine from); otherwise
// deny with reason quarantined, which no audit setting lets through.
func (p *Policy) Quarantined(d Decision, svc *Service) Decision {
	switch {
	case d.Reason == ReasonUnknownIdentity || d.Reason == ReasonNoService:
		return d
	case p.QuarantineAllows(svc):
		return d
	}
	return Decision{Verdict: Deny, Reason: ReasonQuarantined}
}

// ExplainQuarantined is Explain for an identity in quarantine.
func (p *Policy) ExplainQuarantined(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) (Decision, string) {
	d := p.Quarantined(p.Decide(id, svc, port, proto, t), svc)
	if d.Reason != ReasonQuarantined {
		text := p.explain(d, id, svc, port, proto, t)
		if !d.Allowed() {
			return d, text + fmt.Sprintf(" (%s is quarantined; %s is in [quarantine] allow, so the rules decide)", id.Name, svc.Name)
		}
		return d, text + fmt.Sprintf(" (%s is quarantined; %s stays reachable under [quarantine] allow)", id.Name, svc.Name)
	}
	// Named with its port: explaining a bare service gives one line per
	// port, and they must not read the same.
	if proto == ProtoICMP {
		port = 0
	}
	flow := svc.Name + " on " + PortRange{Proto: proto, Lo: port, Hi: port}.String()
	allowed := p.QuarantineAllowed()
	if len(allowed) == 0 {
		return d, fmt.Sprintf("deny: %s is quarantined; no service stays reachable ([quarantine] allow is empty), %s included", id.Name, flow)
	}
	return d, fmt.Sprintf("deny: %s is quarantined; only the services of [quarantine] allow (%s) stay reachable, not %s", id.Name, strings.Join(allowed, ", "), flow)
}
