package policy

import (
	"slices"
	"strings"
	"time"
)

// Grants returns the time-limited grants in force at now: the allow rules
// with an expiry still to come, the soonest to expire first, then by name.
// `wardgate grant list` and the console show them.
func (p *Policy) Grants(now time.Time) []*Rule {
	var out []*Rule
	for _, r := range p.rules {
		if r.Action == Allow && !r.Expires.IsZero() && !r.expiredAt(now) {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b *Rule) int {
		if c := a.Expires.Compare(b.Expires); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// ExpiredRules returns the rules, allow or deny, whose expiry has come at
// now, in file order: they decide nothing any more (`wardgate check` warns
// about them, `wardgate grant prune` removes them).
func (p *Policy) ExpiredRules(now time.Time) []*Rule {
	var out []*Rule
	for _, r := range p.rules {
		if r.expiredAt(now) {
			out = append(out, r)
		}
	}
	return out
}
