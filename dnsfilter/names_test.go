package dnsfilter

import (
	"testing"

	"github.com/wardgate/wardgate/policy"
)

func TestNameSet(t *testing.T) {
	var s nameSet
	for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
		if err := s.add(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, want string
	}{
		{"ads.example.com", "ads.example.com"},
		{"x.ads.example.com", ""},
		{"example.com", ""},
		{"a.track.example", "*.track.example"},
		{"a.b.track.example", ""},
		{"track.example", ""},
		{"evil.org", ""},
		{"a.evil.org", "**.evil.org"},
		{"a.b.c.evil.org", "**.evil.org"},
		{"notevil.org", ""},
		{"", ""},
		{"org", ""},
	} {
		if got := s.match(tc.name); got != tc.want {
			t.Errorf("match(%q) = %q, want %q", tc.name, got, tc.want)
		}
		// policy.MatchFQDN has the same semantics for each pattern.
		for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
			if policy.MatchFQDN(p, tc.name) != (tc.want == p) {
				t.Errorf("policy.MatchFQDN(%q, %q) = %v", p, tc.name, !(tc.want == p))
			}
		}
	}
}

func TestCheckPattern(t *testing.T) {
	for _, p := range []string{"", "*", "*.", "a..b", "a b", "a/b", "*.*.x", "x.*.y", "||ads.com^", "ex%ample.com"} {
		if err := checkPattern(p); err == nil {
			t.Errorf("checkPattern(%q) accepted", p)
		}
	}
	for _, p := range []string{"a", "a.b", "*.a.b", "**.a.b", "_dmarc.x-y.org"} {
		if err := checkPattern(p); err != nil {
			t.Errorf("checkPattern(%q): %v", p, err)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		name, domain string
		want         bool
	}{
		{"nhs.internal", "nhs.internal", true},
		{"pacs.nhs.internal", "nhs.internal", true},
		{"xnhs.internal", "nhs.internal", false},
		{"internal", "nhs.internal", false},
		{"a.b", "", false},
	} {
		if got := under(tc.name, tc.domain); got != tc.want {
			t.Errorf("under(%q, %q) = %v", tc.name, tc.domain, got)
		}
	}
}
