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
// fixes the time; without it the test runs at the current time, so tests of
// time-windowed rules should give `at`. Optional `reason` and `rule` assert
// the deny reason and the deciding rule's name too.

func (p *Policy) runTests() []TestResult {
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
		out = append(out, TestResult{Problem: prob, From: ts.from, To: ts.to, Expect: ts.expect, Got: got, Passed: passed})
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
