package console

import (
	"slices"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Segment is a run of a service's ports on which one decision holds.
type Segment struct {
	Ports    policy.PortRange
	Decision policy.Decision
	State    State
}

// State is how a segment (or a cell, by its most open segment) reads on the
// map.
type State uint8

const (
	StateDeny    State = iota
	StateAudit         // denied by a deny rule in roll-out (audit = true): let through
	StateLimited       // allowed only in a time window or until an expiry, or outside its window now
	StateAllow
)

// Class is the state's CSS class and its word on the page.
func (s State) Class() string {
	return [...]string{"deny", "audit", "limited", "allow"}[s]
}

// Cell is what the map says about one identity and one service at one
// moment: the service's ports (ICMP echo last) cut into segments with the
// decision of each. Every segment is exactly what policy.Decide answers for
// each port in it.
type Cell struct {
	Segments []Segment
	State    State // the most open state of any segment
	Mixed    bool  // segments differ in state
}

// Explain is the segment to explain when the cell is clicked: the first
// one in the cell's state.
func (c Cell) Explain() Segment {
	for _, s := range c.Segments {
		if s.State == c.State {
			return s
		}
	}
	return c.Segments[0]
}

// mapper computes cells against one policy at one moment.
type mapper struct {
	p    *policy.Policy
	cuts cuts
	when map[string]string // rule name -> its window
	t    time.Time
}

func newMapper(p *policy.Policy, t time.Time) *mapper {
	m := &mapper{p: p, cuts: ruleCuts(p), when: map[string]string{}, t: t}
	for _, r := range p.Rules() {
		m.when[r.Name] = r.When
	}
	return m
}

// cuts holds, per protocol, every port where some rule's port range starts
// or ends (as Hi+1): between two cuts, each rule entry either covers every
// port or none, so Decide gives every port there the same answer.
type cuts map[policy.Proto][]uint32

func ruleCuts(p *policy.Policy) cuts {
	c := cuts{}
	for _, r := range p.Rules() {
		for _, pr := range r.Ports {
			if pr.Proto != policy.ProtoICMP {
				c[pr.Proto] = append(c[pr.Proto], uint32(pr.Lo), uint32(pr.Hi)+1)
			}
		}
	}
	for proto, list := range c {
		slices.Sort(list)
		c[proto] = slices.Compact(list)
	}
	return c
}

// cell decides id against every port svc offers.
func (m *mapper) cell(id *policy.Identity, svc *policy.Service) Cell {
	var cell Cell
	add := func(r policy.PortRange) {
		d := m.p.Decide(id, svc, r.Lo, r.Proto, m.t)
		if n := len(cell.Segments); n > 0 {
			last := &cell.Segments[n-1]
			if last.Decision == d && last.Ports.Proto == r.Proto && last.Ports.Hi+1 == r.Lo {
				last.Ports.Hi = r.Hi
				return
			}
		}
		cell.Segments = append(cell.Segments, Segment{Ports: r, Decision: d, State: m.state(d)})
	}
	for _, o := range svc.Ports {
		lo := uint32(o.Lo)
		for _, cut := range m.cuts[o.Proto] {
			if cut > lo && cut <= uint32(o.Hi) {
				add(policy.PortRange{Proto: o.Proto, Lo: uint16(lo), Hi: uint16(cut - 1)})
				lo = cut
			}
		}
		add(policy.PortRange{Proto: o.Proto, Lo: uint16(lo), Hi: o.Hi})
	}
	add(policy.PortRange{Proto: policy.ProtoICMP})
	cell.State = cell.Segments[0].State
	for _, s := range cell.Segments[1:] {
		cell.Mixed = cell.Mixed || s.State != cell.State
		cell.State = max(cell.State, s.State)
	}
	return cell
}

func (m *mapper) state(d policy.Decision) State {
	switch {
	case d.Allowed():
		if !d.Expires.IsZero() || m.when[d.Rule] != "" {
			return StateLimited
		}
		return StateAllow
	case d.Reason == policy.ReasonOutsideTimeWindow:
		return StateLimited
	case d.Reason == policy.ReasonDenyRule && d.Audit:
		return StateAudit
	}
	return StateDeny
}
