// Package suggest proposes the allow rules that would let through what a
// gateway was seen denying: `wardgate suggest` feeds it audit logs (see
// ReadAudit), the console feeds it the gateway's recent decisions.
//
// Every observation is decided again with the policy in hand, at the time
// it was made, so that logs older than the last policy change still give
// the right answer: a flow the policy now allows is counted and dropped; a
// flow that a deny rule forbids is never proposed but kept apart (Held),
// as are flows outside a rule's time window or after its expiry (also
// when the expired rule has been pruned since: the log names it), since
// granting those would undo a decision someone made; the rest (no rule
// allows them) become proposals.
//
// A proposal is one [[rule]] for one service: its `from` names, for each
// port seen, the identities seen there, generalised (see generalise) to
// site:NAME when every identity homed at a site was seen, and to
// group:NAME when at least Options.GroupThreshold of a group's members
// were; ports whose `from` comes out the same share a rule. The result
// depends only on the observations, never on their order: every list is
// sorted and ties are broken by name.
package suggest

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// DefaultGroupThreshold is the share of a group's members that must have
// been seen for a proposal to name the group instead of them.
const DefaultGroupThreshold = 0.5

// Observation is one denied (or, in audit mode, would-be denied) flow.
type Observation struct {
	Time     time.Time
	Identity string // identity name
	Service  string // service name
	Port     uint16 // 0 for ICMP
	Proto    policy.Proto
	// ExpiredRule is the rule the gateway named when it denied the flow
	// because that rule had expired. A rule pruned since then still
	// holds the flow back: proposing it would make a time-limited grant
	// permanent.
	ExpiredRule string
}

// Options tune the proposals. The zero value uses the defaults.
type Options struct {
	// GroupThreshold is the share of a group's members (0 < t <= 1) that
	// must have been seen for the group to stand for them; 0 means
	// DefaultGroupThreshold.
	GroupThreshold float64
}

// flowKey is what proposals are made of: who reached what.
type flowKey struct {
	id, svc int
	port    uint16
	proto   policy.Proto
}

// heldKey is a flow kept out of the proposals, with the rule and reason
// that keep it out.
type heldKey struct {
	flowKey
	reason policy.Reason
	rule   string
}

// Tally counts the flows of one kind and when they were seen.
type Tally struct {
	Flows       int
	First, Last time.Time
}

func (t *Tally) add(at time.Time) {
	if t.Flows == 0 || at.Before(t.First) {
		t.First = at
	}
	if t.Flows == 0 || at.After(t.Last) {
		t.Last = at
	}
	t.Flows++
}

func (t *Tally) merge(o Tally) {
	if o.Flows == 0 {
		return
	}
	if t.Flows == 0 || o.First.Before(t.First) {
		t.First = o.First
	}
	if t.Flows == 0 || o.Last.After(t.Last) {
		t.Last = o.Last
	}
	t.Flows += o.Flows
}

// Counts says what became of the observations.
type Counts struct {
	Observed int // every observation added
	Proposed int // no rule allows them: the proposals cover them
	Held     int // a deny rule, a closed window or an expiry denies them (Result.Held)
	Allowed  int // the policy allows them (at the time they were seen)
	Unknown  int // identity or service not in the policy, or a port it does not offer
}

// Collector accumulates observations against one policy. Not safe for
// concurrent use. Its memory grows with the distinct (identity, service,
// port) triples seen, not with the number of observations.
type Collector struct {
	pol    *policy.Policy
	opts   Options
	flows  map[flowKey]*Tally
	held   map[heldKey]*Tally
	counts Counts

	sites, groups []cover // see members
}

// New returns an empty Collector for pol.
func New(pol *policy.Policy, opts Options) *Collector {
	if opts.GroupThreshold <= 0 || opts.GroupThreshold > 1 {
		opts.GroupThreshold = DefaultGroupThreshold
	}
	return &Collector{pol: pol, opts: opts, flows: map[flowKey]*Tally{}, held: map[heldKey]*Tally{}}
}

// Add decides o again with the policy, at o.Time, and files it.
func (c *Collector) Add(o Observation) {
	c.counts.Observed++
	id, svc := c.pol.Identity(o.Identity), c.pol.Service(o.Service)
	d := c.pol.Decide(id, svc, o.Port, o.Proto, o.Time)
	if d.Reason == policy.ReasonNoRule && o.ExpiredRule != "" {
		d = policy.Decision{Verdict: policy.Deny, Reason: policy.ReasonExpired, Rule: o.ExpiredRule}
	}
	if o.Proto == policy.ProtoICMP {
		o.Port = 0
	}
	switch {
	case d.Allowed():
		c.counts.Allowed++
		return
	case d.Reason == policy.ReasonNoRule:
		c.counts.Proposed++
		k := flowKey{id.ID, svc.ID, o.Port, o.Proto}
		t := c.flows[k]
		if t == nil {
			t = &Tally{}
			c.flows[k] = t
		}
		t.add(o.Time)
	case d.Reason == policy.ReasonDenyRule || d.Reason == policy.ReasonOutsideTimeWindow || d.Reason == policy.ReasonExpired:
		c.counts.Held++
		k := heldKey{flowKey{id.ID, svc.ID, o.Port, o.Proto}, d.Reason, d.Rule}
		t := c.held[k]
		if t == nil {
			t = &Tally{}
			c.held[k] = t
		}
		t.add(o.Time)
	default:
		c.counts.Unknown++
	}
}

// Suggest is New, Add for each observation, Result.
func Suggest(pol *policy.Policy, obs []Observation, opts Options) *Result {
	c := New(pol, opts)
	for _, o := range obs {
		c.Add(o)
	}
	return c.Result()
}

// Result is what a Collector proposes.
type Result struct {
	Proposals []Proposal // by service name, then first port
	Held      []Held     // by flows, most first, then reason and rule
	Counts    Counts
	// GroupThreshold is the threshold the proposals were made with.
	GroupThreshold float64
}

// Proposal is one suggested allow rule and its evidence.
type Proposal struct {
	Name    string             // unique in the policy
	From    []Principal        // sites, then groups, then identities, each by name
	Service string             // the rule's one `to`
	Ports   []policy.PortRange // as observed, sorted
	Tally   Tally              // every flow the rule covers
	// Test is the [[test]] asserting the new access: the identity and
	// port seen most (ties by name), at the last time it was seen (an
	// `at` keeps the test's answer off the clock, as a rule with a time
	// window or an expiry on the same flow requires).
	TestFrom, TestTo string
	TestAt           time.Time
}

// Principal is one entry of a proposal's `from`, with its evidence.
type Principal struct {
	Name    string   // "site:leeds", "group:radiology" or an identity name
	Seen    []string // the identities seen, sorted
	Members int      // identities it names (1 for an identity)
	Unseen  []string // members not seen, sorted (what the generalisation adds)
	Tally   Tally
}

// Held is the flows one rule keeps out of the proposals.
type Held struct {
	Reason policy.Reason // deny-rule, outside-time-window or expired
	Rule   string
	Tally  Tally
	Flows  []HeldFlow // by flows, most first, then names
}

// HeldFlow is one identity's flows to one service port that a rule holds.
type HeldFlow struct {
	Identity, Service string
	Port              policy.PortRange // one port
	Tally             Tally
}

// Result computes the proposals from what was added so far; the Collector
// may go on collecting.
func (c *Collector) Result() *Result {
	res := &Result{Counts: c.counts, GroupThreshold: c.opts.GroupThreshold}
	res.Proposals = c.proposals()
	res.Held = c.heldFlows()
	return res
}

// portKey is one port of one service.
type portKey struct {
	svc   int
	port  uint16
	proto policy.Proto
}

func (k portKey) portRange() policy.PortRange {
	return policy.PortRange{Proto: k.proto, Lo: k.port, Hi: k.port}
}

func (c *Collector) proposals() []Proposal {
	seen := map[portKey]map[int]Tally{} // who was seen on each service port
	for k, t := range c.flows {
		pk := portKey{k.svc, k.port, k.proto}
		if seen[pk] == nil {
			seen[pk] = map[int]Tally{}
		}
		seen[pk][k.id] = *t
	}
	// For each service, the ports whose generalised from is the same
	// share one proposal.
	type group struct {
		svc   int
		from  []cover
		ports []portKey
		seen  map[int]Tally // over all its ports
	}
	groups := map[string]*group{}
	for pk, ids := range seen {
		from := c.generalise(ids)
		names := make([]string, len(from))
		for i, p := range from {
			names[i] = p.name
		}
		key := c.pol.Services()[pk.svc].Name + "\x00" + strings.Join(names, "\x00")
		g := groups[key]
		if g == nil {
			g = &group{svc: pk.svc, from: from, seen: map[int]Tally{}}
			groups[key] = g
		}
		for id, t := range ids {
			all := g.seen[id]
			all.merge(t)
			g.seen[id] = all
		}
		g.ports = append(g.ports, pk)
	}
	out := make([]Proposal, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.ports, comparePorts)
		p := Proposal{Service: c.pol.Services()[g.svc].Name}
		for _, cv := range g.from {
			p.From = append(p.From, c.evidence(cv, g.seen))
		}
		var best flowKey
		bestT := Tally{}
		for _, pk := range g.ports {
			p.Ports = append(p.Ports, pk.portRange())
			ids := seen[pk]
			for _, id := range sortedKeys(ids) {
				t := ids[id]
				p.Tally.merge(t)
				if t.Flows > bestT.Flows {
					best, bestT = flowKey{id, pk.svc, pk.port, pk.proto}, t
				}
			}
		}
		p.TestFrom = c.pol.Identities()[best.id].Name
		p.TestTo = p.Service + ":" + portKey{best.svc, best.port, best.proto}.portRange().String()
		p.TestAt = bestT.Last
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Proposal) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), comparePortRanges(a.Ports[0], b.Ports[0]))
	})
	c.name(out)
	return out
}

// name gives each proposal a rule name that the policy does not use:
// allow-SERVICE, then allow-SERVICE-2, ...
func (c *Collector) name(props []Proposal) {
	taken := map[string]bool{}
	for _, r := range c.pol.Rules() {
		taken[r.Name] = true
	}
	for i := range props {
		for n := 1; ; n++ {
			suffix := ""
			if n > 1 {
				suffix = "-" + strconv.Itoa(n)
			}
			// Names are at most 64 bytes; a service name up to 63.
			name := "allow-" + props[i].Service
			name = name[:min(len(name), 64-len(suffix))] + suffix
			if !taken[name] {
				taken[name] = true
				props[i].Name = name
				break
			}
		}
	}
}

func (c *Collector) heldFlows() []Held {
	type hk struct {
		reason policy.Reason
		rule   string
	}
	by := map[hk]*Held{}
	for k, t := range c.held {
		h := by[hk{k.reason, k.rule}]
		if h == nil {
			h = &Held{Reason: k.reason, Rule: k.rule}
			by[hk{k.reason, k.rule}] = h
		}
		h.Tally.merge(*t)
		h.Flows = append(h.Flows, HeldFlow{
			Identity: c.pol.Identities()[k.id].Name, Service: c.pol.Services()[k.svc].Name,
			Port: portKey{k.svc, k.port, k.proto}.portRange(), Tally: *t,
		})
	}
	out := make([]Held, 0, len(by))
	for _, h := range by {
		slices.SortFunc(h.Flows, func(a, b HeldFlow) int {
			return cmp.Or(b.Tally.Flows-a.Tally.Flows, strings.Compare(a.Identity, b.Identity),
				strings.Compare(a.Service, b.Service), comparePortRanges(a.Port, b.Port))
		})
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b Held) int {
		return cmp.Or(b.Tally.Flows-a.Tally.Flows, cmp.Compare(a.Reason, b.Reason), strings.Compare(a.Rule, b.Rule))
	})
	return out
}

func comparePorts(a, b portKey) int {
	return comparePortRanges(a.portRange(), b.portRange())
}

// comparePortRanges orders tcp, udp, icmp, then by port.
func comparePortRanges(a, b policy.PortRange) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi))
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
