package policy

import (
	"fmt"
	"time"
)

// The [[test]] runner.
//
// A test names an identity (`from`), a target (`to`): "svc:443/tcp",
// "svc:443" (tcp), "svc:icmp", or just "svc", and the expected verdict. With
// a bare service name, `expect = "allow"` passes when some port the service
// offers is allowed, and `expect = "deny"` when none is. `at` (RFC 3339)
// fixes the time; without it the test runs at the current time, which is
// allowed only when no rule with `when` or `expires` bears on it (see
// checkTestTimes), so that a test never passes or fails by the time of day.
// Optional `reason` and `rule` assert the deny reason and the deciding
// rule's name too.

// checkTestTimes refuses a test without `at` that a rule with a time window
// or an expiry applies to (same identity, service and port, whatever the
// time): its result could change with the wall clock, and check, run and
// reload would disagree. It reads the compiled tables, not the rules.
func (b *builder) checkTestTimes(p *Policy) {
	for i := range p.tests {
		ts := &p.tests[i]
		if ts.hasAt || ts.id == nil || ts.svc == nil {
			continue
		}
		port, proto := ts.port, ts.proto
		if proto == ProtoICMP {
			port = 0
		}
		if ts.hasPort && !ts.svc.Offers(port, proto) {
			continue // no-service at any time
		}
		var timed *entry
		d := &p.dec
		for _, pr := range d.principals[ts.id.ID] {
			for _, t := range []*principalTable{&d.bySvc[ts.svc.ID], &d.bySvc[len(d.bySvc)-1]} {
				list := t.find(pr)
				for j := range list {
					e := &list[j]
					if e.window == nil && e.expires.IsZero() {
						continue
					}
					if ts.hasPort && !e.matches(port, proto) || !ts.hasPort && !e.coversSome(ts.svc.Ports) {
						continue
					}
					if timed == nil || e.rule.Name < timed.rule.Name {
						timed = e
					}
				}
			}
		}
		if timed == nil {
			continue
		}
		what := "time window"
		if timed.window == nil {
			what = "expiry"
		}
		b.problems = append(b.problems, Problem{File: ts.prob.File, Line: ts.prob.Line, Col: ts.prob.Col,
			Msg: fmt.Sprintf("%s: the result depends on rule %s's %s; give the test an `at`", ts.label, Quote(timed.rule.Name), what)})
	}
}

// FailedTests runs every [[test]] of the policy and returns the problems
// of those that fail: what an edit of the file (a grant, a proposal) must
// not bring about.
func (p *Policy) FailedTests() []Problem {
	var failed []Problem
	for _, t := range p.RunTests() {
		if !t.Passed {
			failed = append(failed, t.Problem)
		}
	}
	return failed
}

// RunTests runs every [[test]] of the policy.
func (p *Policy) RunTests() []TestResult {
	out := make([]TestResult, 0, len(p.tests))
	now := time.Now()
	for i := range p.tests {
		ts := &p.tests[i]
		t := now
		if ts.hasAt {
			t = ts.at
		}
		got := p.testDecision(ts, t)
		passed := got.Verdict == ts.expect &&
			(!ts.hasReason || got.Reason == ts.reason) &&
			(!ts.hasRule || got.Rule == ts.rule)
		prob := ts.prob
		if !passed {
			prob.Msg = fmt.Sprintf("test %s -> %s: expected %s, got %s", ts.from, ts.to, describeExpect(ts), describeDecision(got))
		}
		out = append(out, TestResult{Problem: prob, From: ts.from, To: ts.to, Expect: ts.expect, Rule: ts.rule, Got: got, Passed: passed})
	}
	return out
}

func (p *Policy) testDecision(ts *testSpec, t time.Time) Decision {
	if ts.hasPort || ts.svc == nil {
		return p.Decide(ts.id, ts.svc, ts.port, ts.proto, t)
	}
	// Bare service: the first allowed port, else the first port's denial.
	var first Decision
	firstSet := false
	try := func(port uint16, proto Proto) bool {
		d := p.Decide(ts.id, ts.svc, port, proto, t)
		if !firstSet {
			first, firstSet = d, true
		}
		if d.Allowed() {
			first = d
			return true
		}
		return false
	}
	for _, r := range ts.svc.Ports {
		for port := uint32(r.Lo); port <= uint32(r.Hi); port++ {
			if try(uint16(port), r.Proto) {
				return first
			}
		}
	}
	try(0, ProtoICMP)
	return first
}

func describeExpect(ts *testSpec) string {
	s := ts.expect.String()
	if ts.hasReason {
		s += " (" + ts.reason.String() + ")"
	}
	if ts.hasRule {
		s += fmt.Sprintf(" by rule %q", ts.rule)
	}
	return s
}

func describeDecision(d Decision) string {
	s := d.Verdict.String()
	if d.Reason != ReasonNone {
		s += " (" + d.Reason.String() + ")"
	}
	if d.Rule != "" {
		s += fmt.Sprintf(" by rule %q", d.Rule)
	}
	return s
}
