package policy

import (
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
