package dnsname

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"www.nhs.uk", "www.nhs.uk", true},
		{"www.nhs.uk", "nhs.uk", false},
		{"www.nhs.uk", "a.www.nhs.uk", false},
		{"*.nhs.uk", "www.nhs.uk", true},
		{"*.nhs.uk", "nhs.uk", false}, // the apex is never implied
		{"*.nhs.uk", "a.b.nhs.uk", false},
		{"*.nhs.uk", ".nhs.uk", false},
		{"*.nhs.uk", "evilnhs.uk", false},
		{"*.nhs.uk", "x.evilnhs.uk", false},
		{"*.nhs.uk", "www.nhs.uk.evil.com", false},
		{"**.nhs.uk", "www.nhs.uk", true},
		{"**.nhs.uk", "a.b.c.nhs.uk", true},
		{"**.nhs.uk", "nhs.uk", false},
		{"**.nhs.uk", "evilnhs.uk", false},
		{"**.nhs.uk", "a.evilnhs.uk", false},
		{"**.nhs.uk", "a..nhs.uk", false},
		{"**.nhs.uk", ".a.nhs.uk", false},
		{"**.nhs.uk", ".nhs.uk", false},
		{"**.nhs.uk", "", false},
	} {
		if got := Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Match("**.nhs.uk", "a.b.nhs.uk") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func TestCheckPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		err     string // "" when valid
	}{
		{"www.nhs.uk", ""},
		{"nhs.uk", ""},
		{"localhost", ""},
		{"*.nhs.uk", ""},
		{"**.nhs.uk", ""},
		{"*.a-b.example.org", ""},
		{"_dmarc.nhs.uk", ""},
		{"1password.com", ""},
		{"", "empty DNS name"},
		{"*", `"*": a wildcard may only be the whole first label`},
		{"**", `"**": a wildcard may only be the whole first label`},
		{"*.", "empty DNS name"},
		{"*.uk", "a wildcard needs at least two labels after it"},
		{"**.uk", "a wildcard needs at least two labels after it"},
		{"*.*.nhs.uk", "a wildcard may only be the whole first label"},
		{"x.*.nhs.uk", "a wildcard may only be the whole first label"},
		{"w*.nhs.uk", "a wildcard may only be the whole first label"},
		{"***.nhs.uk", "a wildcard may only be the whole first label"},
		{"*nhs.uk", "a wildcard may only be the whole first label"},
		{"nhs..uk", "empty label"},
		{".nhs.uk", "empty label"},
		{"-a.nhs.uk", `label "-a" starts or ends with '-'`},
		{"a-.nhs.uk", `label "a-" starts or ends with '-'`},
		{"a b.nhs.uk", `label "a b" has ' '`},
		{"||ads.example^", `label "||ads" has '|'`},
		{"Nhs.uk", `label "Nhs" has 'N'`},
		{strings.Repeat("a", 64) + ".uk", "label of 64 bytes is longer than 63"},
		{strings.Repeat("a.", 127) + "uk", "DNS name of 256 bytes is longer than 253"},
	} {
		err := CheckPattern(tc.pattern)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("CheckPattern(%q): %v", tc.pattern, err)
		case tc.err != "" && err == nil:
			t.Errorf("CheckPattern(%q) accepted", tc.pattern)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("CheckPattern(%q) = %v, want %q", tc.pattern, err, tc.err)
		}
	}
	// The longest valid name and label.
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61)
	if err := CheckName(long); err != nil {
		t.Errorf("253-byte name: %v", err)
	}
	if err := CheckLabel(strings.Repeat("a", 63)); err != nil {
		t.Errorf("63-byte label: %v", err)
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"www.NHS.uk.": "www.nhs.uk",
		"www.nhs.uk":  "www.nhs.uk",
		"a..":         "a.",
		".":           "",
		"":            "",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
	var sink string
	if n := testing.AllocsPerRun(100, func() { sink = Canonical("www.nhs.uk.") }); n != 0 {
		t.Errorf("Canonical of a lower-case name allocates %v times", n)
	}
	_ = sink
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
		if got := Under(tc.name, tc.domain); got != tc.want {
			t.Errorf("Under(%q, %q) = %v, want %v", tc.name, tc.domain, got, tc.want)
		}
	}
}

// naiveMatch compares labels one by one: the definition Match must agree
// with.
func naiveMatch(pattern, name string) bool {
	wildcard, suffix := Split(pattern)
	pl, nl := strings.Split(suffix, "."), strings.Split(name, ".")
	extra := len(nl) - len(pl)
	switch {
	case wildcard == "" && extra != 0, wildcard == "*" && extra != 1, wildcard == "**" && extra < 1:
		return false
	}
	for i, l := range pl {
		if nl[extra+i] != l {
			return false
		}
	}
	return true
}

// FuzzMatch: for every valid pattern and name, Match agrees with a
// label-by-label comparison, a valid exact pattern matches itself, and
// Canonical of a valid name is the name.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"*.nhs.uk", "www.nhs.uk"}, {"**.nhs.uk", "a.b.nhs.uk"}, {"nhs.uk", "nhs.uk"},
		{"*.nhs.uk", "nhs.uk"}, {"**.nhs.uk", "evilnhs.uk"}, {"*.uk", "a.uk"}, {"-a.b", "-a.b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := Match(pattern, name) // any input: no panic
		if CheckPattern(pattern) != nil || CheckName(name) != nil {
			return
		}
		if want := naiveMatch(pattern, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, label by label %v", pattern, name, got, want)
		}
		if Canonical(name) != name {
			t.Fatalf("Canonical(%q) = %q", name, Canonical(name))
		}
		if w, _ := Split(pattern); w == "" && !Match(pattern, pattern) {
			t.Fatalf("%q does not match itself", pattern)
		}
	})
}
