package dnsname

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	var s Set
	for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
		if err := s.Add(p); err != nil {
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
		if got := s.Match(tc.name); got != tc.want {
			t.Errorf("match(%q) = %q, want %q", tc.name, got, tc.want)
		}
		// Match says the same of each pattern.
		for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
			if Match(p, tc.name) != (tc.want == p) {
				t.Errorf("Match(%q, %q) = %v", p, tc.name, !(tc.want == p))
			}
		}
	}
}

// A Set answers as a scan of its patterns with Match would, on random
// names and patterns over a small alphabet of labels (so that they collide
// often).
func TestSetRandomAgainstMatch(t *testing.T) {
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
		var s Set
		var patterns []string
		for range 1 + rng.IntN(6) {
			p := name(2)
			switch rng.IntN(3) {
			case 1:
				p = "*." + p
			case 2:
				p = "**." + p
			}
			if err := s.Add(p); err != nil {
				t.Fatal(err)
			}
			patterns = append(patterns, p)
		}
		for range 50 {
			n := name(1)
			naive := false
			for _, p := range patterns {
				naive = naive || Match(p, n)
			}
			if got := s.Match(n) != ""; got != naive {
				t.Fatalf("patterns %v, name %q: Set %v, naive %v", patterns, n, got, naive)
			}
		}
	}
}

func TestSetMatchDoesNotAllocate(t *testing.T) {
	var s Set
	for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
		s.Add(p)
	}
	if n := testing.AllocsPerRun(100, func() { s.Match("a.b.c.d.evil.org") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}
