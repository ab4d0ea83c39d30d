package dnsfilter

import (
	"math/rand/v2"
	"strings"
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

// The nameSet answers as a naive scan of its patterns with
// policy.MatchFQDN would, on random names and patterns over a small
// alphabet of labels (so that they collide often).
func TestNameSetRandomAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := []string{"a", "b", "c", "example", "org"}
	name := func(min int) string {
		n := min + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = labels[rng.IntN(len(labels))]
		}
		return strings.Join(parts, ".")
	}
	for range 200 {
		var s nameSet
		var patterns []string
		for range 1 + rng.IntN(6) {
			p := name(2)
			switch rng.IntN(3) {
			case 1:
				p = "*." + p
			case 2:
				p = "**." + p
			}
			if err := s.add(p); err != nil {
				t.Fatal(err)
			}
			patterns = append(patterns, p)
		}
		for range 50 {
			n := name(1)
			naive := false
			for _, p := range patterns {
				naive = naive || policy.MatchFQDN(p, n)
			}
			if got := s.match(n) != ""; got != naive {
				t.Fatalf("patterns %v, name %q: nameSet %v, naive %v", patterns, n, got, naive)
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	var s nameSet
	for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
		s.add(p)
	}
	if n := testing.AllocsPerRun(100, func() { s.match("a.b.c.d.evil.org") }); n != 0 {
		t.Errorf("match allocates %v times", n)
	}
}
