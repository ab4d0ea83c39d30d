package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// naiveDecide is the policy semantics of docs/design.md written as plainly as
// possible: every rule, one by one. The compiled Decide must agree with it.
func naiveDecide(p *Policy, id *Identity, svc *Service, port uint16, proto Proto, t time.Time) Decision {
	if id == nil {
		return Decision{Reason: ReasonUnknownIdentity}
	}
	if svc == nil {
		return Decision{Reason: ReasonNoService}
	}
	if proto == ProtoICMP {
		port = 0
	}
	if !svc.Offers(port, proto) {
		return Decision{Reason: ReasonNoService}
	}
	var allows, denies, outside, expired []*Rule
	for _, r := range p.Rules() {
		if !naiveFrom(r, id) || !naiveTo(r, svc) {
			continue
		}
		if len(r.Ports) > 0 {
			in := false
			for _, pr := range r.Ports {
				in = in || pr.Contains(port, proto)
			}
			if !in {
				continue
			}
		}
		open := true
		if r.When != "" {
			w, err := parseTimeWindow(r.When)
			if err != nil {
				panic(err)
			}
			open = w.active(t)
		}
		if !r.Expires.IsZero() && !t.Before(r.Expires) {
			if r.Action == Allow && open {
				expired = append(expired, r)
			}
			continue
		}
		if !open {
			if r.Action == Allow {
				outside = append(outside, r)
			}
			continue
		}
		if r.Action == Deny {
			denies = append(denies, r)
		} else {
			allows = append(allows, r)
		}
	}
	byName := func(a, b *Rule) int { return strings.Compare(a.Name, b.Name) }
	if len(denies) > 0 {
		slices.SortFunc(denies, func(a, b *Rule) int {
			if a.Audit != b.Audit {
				if a.Audit {
					return 1
				}
				return -1
			}
			return byName(a, b)
		})
		return Decision{Verdict: Deny, Rule: denies[0].Name, Reason: ReasonDenyRule, Audit: denies[0].Audit}
	}
	if len(allows) > 0 {
		// The rule granting longest: never expiring, else the latest.
		slices.SortFunc(allows, func(a, b *Rule) int {
			switch {
			case a.Expires.Equal(b.Expires):
				return byName(a, b)
			case a.Expires.IsZero():
				return -1
			case b.Expires.IsZero():
				return 1
			}
			return b.Expires.Compare(a.Expires)
		})
		return Decision{Verdict: Allow, Rule: allows[0].Name, Expires: allows[0].Expires}
	}
	if len(expired) > 0 {
		slices.SortFunc(expired, byName)
		return Decision{Verdict: Deny, Rule: expired[0].Name, Reason: ReasonExpired, Expires: expired[0].Expires}
	}
	if len(outside) > 0 {
		slices.SortFunc(outside, byName)
		return Decision{Verdict: Deny, Rule: outside[0].Name, Reason: ReasonOutsideTimeWindow}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoRule}
}

func naiveFrom(r *Rule, id *Identity) bool {
	for _, f := range r.From {
		switch {
		case f == "*", f == id.Name, f == "site:"+id.Site:
			return true
		}
		for _, g := range id.Groups {
			if f == "group:"+g {
				return true
			}
		}
	}
	return false
}

func naiveTo(r *Rule, svc *Service) bool {
	for _, t := range r.To {
		if t == "*" || t == svc.Name {
			return true
		}
	}
	return false
}

// naiveCanReach: some allow not expired by now, at some time, and no deny
// that applies at all times (no window, no expiry).
func naiveCanReach(p *Policy, id *Identity, svc *Service) bool {
	now := time.Now()
	try := func(port uint16, proto Proto) bool {
		for _, r := range p.Rules() {
			if r.Action != Allow || !naiveFrom(r, id) || !naiveTo(r, svc) || (!r.Expires.IsZero() && !now.Before(r.Expires)) {
				continue
			}
			if len(r.Ports) > 0 && !slices.ContainsFunc(r.Ports, func(pr PortRange) bool { return pr.Contains(port, proto) }) {
				continue
			}
			// Allowed at some time; now is any deny always in force?
			denied := false
			for _, d := range p.Rules() {
				if d.Action != Deny || d.When != "" || !d.Expires.IsZero() || !naiveFrom(d, id) || !naiveTo(d, svc) {
					continue
				}
				if len(d.Ports) == 0 || slices.ContainsFunc(d.Ports, func(pr PortRange) bool { return pr.Contains(port, proto) }) {
					denied = true
				}
			}
			if !denied {
				return true
			}
		}
		return false
	}
	for _, r := range svc.Ports {
		for port := uint32(r.Lo); port <= uint32(r.Hi); port++ {
			if try(uint16(port), r.Proto) {
				return true
			}
		}
	}
	return try(0, ProtoICMP)
}

// probes returns the ports worth asking about for svc: its own, a few it
// does not offer, and ICMP.
func probes(svc *Service) []PortRange {
	var out []PortRange
	for _, r := range svc.Ports {
		out = append(out, PortRange{Proto: r.Proto, Lo: r.Lo, Hi: r.Lo}, PortRange{Proto: r.Proto, Lo: r.Hi, Hi: r.Hi})
	}
	out = append(out,
		PortRange{Proto: ProtoTCP, Lo: 443, Hi: 443},
		PortRange{Proto: ProtoUDP, Lo: 443, Hi: 443},
		PortRange{Proto: ProtoTCP, Lo: 445, Hi: 445},
		PortRange{Proto: ProtoICMP})
	return out
}

// probeTimes spans a week around a DST change, at odd minutes.
func probeTimes(rng *rand.Rand) []time.Time {
	base := time.Date(2026, 3, 26, 0, 0, 0, 0, time.UTC)
	var out []time.Time
	for i := 0; i < 6; i++ {
		out = append(out, base.Add(time.Duration(rng.IntN(7*24*60))*time.Minute))
	}
	return append(out, time.Date(2026, 3, 27, 22, 30, 0, 0, time.UTC), time.Date(2026, 3, 28, 2, 0, 0, 0, time.UTC))
}

func TestDecideMatchesNaive(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		spec := genSpec{sites: 1 + rng.IntN(3), identities: 5 + rng.IntN(25), lan: rng.IntN(4), groups: 1 + rng.IntN(6),
			services: 3 + rng.IntN(12), egress: rng.IntN(3), rules: 1 + rng.IntN(60), windows: true, expiry: true, denies: true}
		text := genPolicy(rng, spec).text()
		p, err := Parse("gen.toml", []byte(text))
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, text)
		}
		times := probeTimes(rng)
		n := 0
		for _, id := range p.Identities() {
			for _, svc := range p.Services() {
				for _, pr := range probes(svc) {
					for _, at := range times {
						got := p.Decide(id, svc, pr.Lo, pr.Proto, at)
						want := naiveDecide(p, id, svc, pr.Lo, pr.Proto, at)
						if got != want {
							t.Fatalf("seed %d: %s -> %s %s at %s: compiled %+v, naive %+v\n%s", seed, id.Name, svc.Name, pr, at, got, want, text)
						}
						n++
					}
				}
				if got, want := p.CanReach(id, svc), naiveCanReach(p, id, svc); got != want {
					t.Fatalf("seed %d: CanReach(%s, %s) = %v, naive %v\n%s", seed, id.Name, svc.Name, got, want, text)
				}
			}
		}
		t.Logf("seed %d: %d decisions agree (%d rules)", seed, n, len(p.Rules()))
	}
}

// TestShuffleNeverChangesDecisions loads the same policy with every table
// in a different order and requires the same decision for every question.
func TestShuffleNeverChangesDecisions(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		spec := genSpec{sites: 3, identities: 25, lan: 3, groups: 5, services: 12, egress: 2, rules: 50, windows: true, expiry: true, denies: true}
		items := genPolicy(rng, spec)
		base, err := Parse("gen.toml", []byte(items.text()))
		if err != nil {
			t.Fatal(err)
		}
		times := probeTimes(rng)
		for round := 0; round < 4; round++ {
			sh := items
			for _, l := range []*[]string{&sh.sites, &sh.identities, &sh.services, &sh.rules} {
				c := slices.Clone(*l)
				rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
				*l = c
			}
			p, err := Parse("shuffled.toml", []byte(sh.text()))
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range base.Identities() {
				id2 := p.Identity(id.Name)
				for _, svc := range base.Services() {
					svc2 := p.Service(svc.Name)
					if svc.VIP != svc2.VIP {
						t.Fatalf("seed %d: service %s VIP %s, shuffled %s", seed, svc.Name, svc.VIP, svc2.VIP)
					}
					if base.CanReach(id, svc) != p.CanReach(id2, svc2) {
						t.Fatalf("seed %d: CanReach(%s, %s) changed with order", seed, id.Name, svc.Name)
					}
					for _, pr := range probes(svc) {
						for _, at := range times {
							a := base.Decide(id, svc, pr.Lo, pr.Proto, at)
							b := p.Decide(id2, svc2, pr.Lo, pr.Proto, at)
							if a != b {
								t.Fatalf("seed %d round %d: %s -> %s %s at %s: %+v, shuffled %+v", seed, round, id.Name, svc.Name, pr, at, a, b)
							}
						}
					}
				}
			}
			if len(base.Warnings()) != len(p.Warnings()) {
				t.Errorf("seed %d: %d warnings, shuffled %d", seed, len(base.Warnings()), len(p.Warnings()))
			}
		}
	}
}
