package policy

import (
	"strings"
	"testing"
)

const examplePath = "../configs/example/policy.toml"

func loadExample(t testing.TB) *Policy {
	t.Helper()
	p, err := Load(examplePath)
	if err != nil {
		t.Fatalf("load example: %v", err)
	}
	return p
}

func TestExampleLoadsAndPasses(t *testing.T) {
	p := loadExample(t)
	for _, w := range p.Warnings() {
		t.Errorf("warning: %v", w)
	}
	for _, r := range p.RunTests() {
		if !r.Passed {
			t.Errorf("%v", r.Problem)
		}
	}
	for _, s := range p.Services() {
		t.Logf("service %s vip %s ports %s", s.Name, s.VIP, rangesString(s.Ports))
	}
}

func TestRunTests(t *testing.T) {
	text := baseTOML + okRule + `[[test]]
from = "alice"
to = "pacs:443/tcp"
expect = "allow"
rule = "ok"

[[test]]
from = "alice"
to = "pacs"
expect = "allow"

[[test]]
from = "alice"
to = "pacs:443"
expect = "deny"
reason = "no-rule"

[[test]]
from = "alice"
to = "pacs:80/tcp"
expect = "deny"
reason = "no-service"

[[test]]
from = "alice"
to = "pacs:icmp"
expect = "allow"
at = 2026-03-02T09:30:00Z
`
	p, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	res := p.RunTests()
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	wantPass := []bool{true, true, false, true, true}
	for i, r := range res {
		if r.Passed != wantPass[i] {
			t.Errorf("test %d: passed %v, want %v: %v", i+1, r.Passed, wantPass[i], r.Problem)
		}
	}
	if got := res[2].Problem.Error(); got != `t.toml:39:1: test alice -> pacs:443: expected deny (no-rule), got allow by rule "ok"` {
		t.Errorf("failure message: %s", got)
	}
	if res[0].From != "alice" || res[0].To != "pacs:443/tcp" || res[0].Expect != Allow || res[0].Got.Rule != "ok" {
		t.Errorf("result fields: %+v", res[0])
	}
	if !strings.HasPrefix(res[0].Problem.Error(), "t.toml:28:1: ") {
		t.Errorf("position: %s", res[0].Problem.Error())
	}
}
