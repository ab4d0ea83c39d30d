package policy

import (
	"cmp"
	"slices"
	"time"
)

// AccessChange is access that a policy change grants or removes: one
// identity, one service, a range of ports. It is what a reviewer of a
// policy change needs to see, whatever the edit looked like (a rule, a
// group membership, a service's ports).
type AccessChange struct {
	Identity string    `json:"identity"`
	Service  string    `json:"service"`
	Ports    PortRange `json:"-"`
	Port     string    `json:"ports"` // Ports as "443/tcp", "5000-5010/udp", "icmp"
	Gained   bool      `json:"gained"`
	// Rule is the rule that allows the access: in the new policy when it
	// is gained, in the old one when it is lost.
	Rule string `json:"rule"`
	// Reason is why the new policy denies access that was lost (or why
	// the old one denied what is gained).
	Reason string `json:"reason"`
}

// Diff compares what every identity may reach, service by service and
// port by port, in old and new at time t, and lists what changed. Both
// policies are matched by name: an identity or service only one of them
// has reaches nothing in the other.
//
// It decides with Decide over the identity x service grid, one port per
// stretch of ports on which no service offer and no rule's ports begin or
// end (decisions cannot change within such a stretch), so a service
// offering 1-65535 costs a few decisions, not 65535.
func Diff(old, new *Policy, t time.Time) []AccessChange {
	var out []AccessChange
	for _, idName := range unionNames(old.identities, new.identities, func(i *Identity) string { return i.Name }) {
		for _, svcName := range unionNames(old.services, new.services, func(s *Service) string { return s.Name }) {
			out = append(out, diffPair(old, new, idName, svcName, t)...)
		}
	}
	return out
}

// access is one stretch of ports and who allows or denies it.
type access struct {
	ports PortRange
	oldD  Decision
	newD  Decision
	oldOK bool
	newOK bool
}

func diffPair(old, new *Policy, idName, svcName string, t time.Time) []AccessChange {
	decide := func(p *Policy, port uint16, proto Proto) (Decision, bool) {
		id, svc := p.Identity(idName), p.Service(svcName)
		if id == nil {
			return Decision{Reason: ReasonUnknownIdentity}, false
		}
		if svc == nil || !svc.Offers(port, proto) {
			return Decision{Reason: ReasonNoService}, false
		}
		d := p.Decide(id, svc, port, proto, t)
		return d, d.Allowed()
	}
	var stretches []access
	add := func(r PortRange) {
		a := access{ports: r}
		a.oldD, a.oldOK = decide(old, r.Lo, r.Proto)
		a.newD, a.newOK = decide(new, r.Lo, r.Proto)
		if a.oldOK == a.newOK {
			return
		}
		if n := len(stretches); n > 0 {
			last := &stretches[n-1]
			if last.ports.Proto == r.Proto && int(last.ports.Hi)+1 == int(r.Lo) && last.oldOK == a.oldOK &&
				last.oldD.Rule == a.oldD.Rule && last.newD.Rule == a.newD.Rule && last.newD.Reason == a.newD.Reason && last.oldD.Reason == a.oldD.Reason {
				last.ports.Hi = r.Hi
				return
			}
		}
		stretches = append(stretches, a)
	}
	for _, proto := range []Proto{ProtoTCP, ProtoUDP} {
		cuts := portCuts(old, new, svcName, proto)
		for i := 0; i+1 < len(cuts); i++ {
			add(PortRange{Proto: proto, Lo: uint16(cuts[i]), Hi: uint16(cuts[i+1] - 1)})
		}
	}
	add(PortRange{Proto: ProtoICMP})
	out := make([]AccessChange, 0, len(stretches))
	for _, a := range stretches {
		c := AccessChange{Identity: idName, Service: svcName, Ports: a.ports, Port: a.ports.String(), Gained: a.newOK}
		if a.newOK {
			c.Rule, c.Reason = a.newD.Rule, a.oldD.Reason.String()
		} else {
			c.Rule, c.Reason = a.oldD.Rule, a.newD.Reason.String()
		}
		out = append(out, c)
	}
	return out
}

// portCuts are the ports where, for svcName and proto, an offer of the
// service or the ports of a rule begin or end (one past the end), in
// either policy, sorted: decisions are constant from one cut to the next.
// Ports no offer covers are cut too, and decide to "not offered".
func portCuts(old, new *Policy, svcName string, proto Proto) []int {
	cuts := []int{0, 65536}
	addRanges := func(rs []PortRange) {
		for _, r := range rs {
			if r.Proto == proto {
				cuts = append(cuts, int(r.Lo), int(r.Hi)+1)
			}
		}
	}
	for _, p := range []*Policy{old, new} {
		if s := p.Service(svcName); s != nil {
			addRanges(s.Ports)
		}
		for _, r := range p.rules {
			addRanges(r.Ports)
		}
	}
	slices.Sort(cuts)
	return slices.Compact(cuts)
}

// unionNames lists the names of a and b, sorted, each once.
func unionNames[T any](a, b []T, name func(T) string) []string {
	var out []string
	for _, x := range a {
		out = append(out, name(x))
	}
	for _, x := range b {
		out = append(out, name(x))
	}
	slices.SortFunc(out, cmp.Compare)
	return slices.Compact(out)
}
