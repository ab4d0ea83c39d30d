package policy

import (
	"slices"
	"testing"
	"time"
)

// TestGrants: the allow rules with an expiry still to come, soonest first
// (ties by name); ExpiredRules: every rule, allow or deny, whose expiry
// has come, in file order.
func TestGrants(t *testing.T) {
	text := baseTOML + okRule + `[[rule]]
name = "late"
from = ["alice"]
to = ["pacs"]
expires = "2026-12-01T18:00:00Z"
reason = "locum"

[[rule]]
name = "b-soon"
from = ["group:radiology"]
to = ["pacs"]
expires = "2026-12-01T12:00:00Z"

[[rule]]
name = "a-soon"
from = ["alice"]
to = ["pacs"]
expires = "2026-12-01T12:00:00Z"

[[rule]]
name = "deny-until"
action = "deny"
from = ["alice"]
to = ["pacs"]
ports = ["22/tcp"]
expires = "2026-12-01T12:00:00Z"
`
	p, err := Parse("grants.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	names := func(rs []*Rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	noon := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at              time.Time
		grants, expired []string
	}{
		{noon.Add(-time.Second), []string{"a-soon", "b-soon", "late"}, nil},
		{noon, []string{"late"}, []string{"b-soon", "a-soon", "deny-until"}},
		{noon.Add(6 * time.Hour), nil, []string{"late", "b-soon", "a-soon", "deny-until"}},
	} {
		if got := names(p.Grants(tc.at)); !slices.Equal(got, tc.grants) {
			t.Errorf("Grants(%v) = %v, want %v", tc.at, got, tc.grants)
		}
		if got := names(p.ExpiredRules(tc.at)); !slices.Equal(got, tc.expired) {
			t.Errorf("ExpiredRules(%v) = %v, want %v", tc.at, got, tc.expired)
		}
	}
	if g := p.Grants(noon); g[0].Reason != "locum" {
		t.Errorf("reason %q", g[0].Reason)
	}
}
