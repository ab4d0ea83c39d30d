package policy

import (
	"fmt"
	"strings"
)

// matchFQDN implements MatchFQDN. It does not allocate.
func matchFQDN(pattern, name string) bool {
	switch {
	case strings.HasPrefix(pattern, "**."):
		suffix := pattern[2:] // ".example.org"
		if !strings.HasSuffix(name, suffix) {
			return false
		}
		head := name[:len(name)-len(suffix)]
		return head != "" && head[0] != '.' && head[len(head)-1] != '.' && !strings.Contains(head, "..")
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:]
		if !strings.HasSuffix(name, suffix) {
			return false
		}
		head := name[:len(name)-len(suffix)]
		return head != "" && !strings.Contains(head, ".")
	}
	return pattern == name
}

// normalizeName lower-cases a DNS name and drops one trailing dot. It
// allocates only when the name has upper-case letters.
func normalizeName(s string) string {
	s = strings.TrimSuffix(s, ".")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// checkDNSName validates a DNS name as written in the file (a service's dns
// names and the overlay domain).
func checkDNSName(s string) error {
	if s == "" {
		return fmt.Errorf("empty DNS name")
	}
	if len(s) > 253 {
		return fmt.Errorf("DNS name %s is longer than 253 characters", Quote(s))
	}
	for _, l := range strings.Split(s, ".") {
		if err := checkLabel(l); err != nil {
			return fmt.Errorf("DNS name %q: %w", s, err)
		}
	}
	return nil
}

func checkLabel(l string) error {
	if l == "" {
		return fmt.Errorf("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %s is longer than 63 characters", Quote(l))
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("label %q has %q (use lower-case letters, digits, '-' and '_')", l, c)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	return nil
}

// checkFQDNPattern validates an egress pattern: "name.example.org",
// "*.example.org" or "**.example.org"; a wildcard is only ever the whole
// first label, and at least two labels follow it.
func checkFQDNPattern(p string) error {
	rest := p
	switch {
	case strings.HasPrefix(p, "**."):
		rest = p[3:]
	case strings.HasPrefix(p, "*."):
		rest = p[2:]
	}
	if strings.Contains(rest, "*") {
		return fmt.Errorf("FQDN pattern %q: a wildcard may only be the whole first label (\"*.\" or \"**.\")", p)
	}
	if err := checkDNSName(rest); err != nil {
		return fmt.Errorf("FQDN pattern %q: %w", p, err)
	}
	if rest != p && !strings.Contains(rest, ".") {
		return fmt.Errorf("FQDN pattern %q: a wildcard needs at least two labels after it", p)
	}
	return nil
}
