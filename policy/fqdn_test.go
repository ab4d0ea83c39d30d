package policy

import "testing"

func TestMatchFQDN(t *testing.T) {
	tests := []struct {
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
		{"*.nhs.uk", "www.nhs.uk.evil.com", false},
		{"**.nhs.uk", "www.nhs.uk", true},
		{"**.nhs.uk", "a.b.c.nhs.uk", true},
		{"**.nhs.uk", "nhs.uk", false},
		{"**.nhs.uk", "evilnhs.uk", false},
		{"**.nhs.uk", "a..nhs.uk", false},
		{"**.nhs.uk", ".a.nhs.uk", false},
		{"**.nhs.uk", ".nhs.uk", false},
	}
	for _, tt := range tests {
		if got := MatchFQDN(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchFQDN(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestCheckFQDNPattern(t *testing.T) {
	good := []string{"www.nhs.uk", "*.nhs.uk", "**.nhs.uk", "nhs.uk", "*.a-b.example.org", "_dmarc.nhs.uk"}
	bad := []string{"", "*", "**", "*.uk", "**.uk", "*.*.nhs.uk", "w*.nhs.uk", "***.nhs.uk", "nhs..uk", "-a.nhs.uk", "a b.nhs.uk", "*nhs.uk"}
	for _, p := range good {
		if err := checkFQDNPattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range bad {
		if err := checkFQDNPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestMatchFQDNNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { MatchFQDN("**.nhs.uk", "a.b.nhs.uk") }); n != 0 {
		t.Errorf("allocates %v", n)
	}
}
