package dnsfilter

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/internal/dnsname"
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
		// dnsname.Match has the same semantics for each pattern.
		for _, p := range []string{"ads.example.com", "*.track.example", "**.evil.org"} {
			if dnsname.Match(p, tc.name) != (tc.want == p) {
				t.Errorf("dnsname.Match(%q, %q) = %v", p, tc.name, !(tc.want == p))
			}
		}
	}
}

// The nameSet answers as a naive scan of its patterns with
// dnsname.Match would, on random names and patterns over a small
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
				naive = naive || dnsname.Match(p, n)
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
