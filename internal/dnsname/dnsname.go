// Package dnsname is the one home of DNS names and FQDN patterns in
// wardgate: how a name is written canonically, which names and patterns are
// valid, and which names a pattern matches. The policy (service names, dns
// names, the overlay domain, egress patterns) and the DNS filter
// (blocklists, allow_internal) both use it, so a pattern means the same and
// is refused for the same reason everywhere.
//
// The rules:
//
//   - A name is canonical in lower case without a trailing dot (Canonical).
//   - A name has 1 to 253 bytes in labels of 1 to 63 bytes, each of
//     lower-case letters, digits, '-' and '_', not starting or ending with
//     '-' (RFC 1035 host names, with '_' for service labels like _dmarc).
//     Labels may start with a digit (RFC 1123).
//   - A pattern is a name ("name.example.org", matching itself only),
//     "*.example.org" (exactly one more label) or "**.example.org" (one or
//     more labels). The wildcard is the whole first label and is followed
//     by at least two labels, so "*.org" is refused: no pattern covers a
//     whole top-level domain. The apex is never implied: "*.example.org"
//     does not match "example.org".
package dnsname

import (
	"errors"
	"fmt"
	"strings"
)

// Length limits of RFC 1035 (as text, without the trailing dot).
const (
	MaxName  = 253
	MaxLabel = 63
)

// Canonical lower-cases a name and drops one trailing dot. It allocates
// only when the name has upper-case letters, so lookups of names that are
// already canonical cost nothing.
func Canonical(s string) string {
	s = strings.TrimSuffix(s, ".")
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// CheckName validates a canonical name.
func CheckName(s string) error {
	if s == "" {
		return errors.New("empty DNS name")
	}
	if len(s) > MaxName {
		return fmt.Errorf("DNS name of %d bytes is longer than %d", len(s), MaxName)
	}
	for l := range strings.SplitSeq(s, ".") {
		if err := CheckLabel(l); err != nil {
			return fmt.Errorf("DNS name %q: %w", s, err)
		}
	}
	return nil
}

// CheckLabel validates one label of a canonical name.
func CheckLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > MaxLabel {
		return fmt.Errorf("label of %d bytes is longer than %d", len(l), MaxLabel)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("label %q has %q (use lower-case letters, digits, '-' and '_')", l, c)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	return nil
}

// Split returns a pattern's wildcard ("", "*" or "**") and the name after
// it. It does not check the pattern.
func Split(p string) (wildcard, suffix string) {
	switch {
	case strings.HasPrefix(p, "**."):
		return "**", p[3:]
	case strings.HasPrefix(p, "*."):
		return "*", p[2:]
	}
	return "", p
}

// CheckPattern validates a canonical pattern.
func CheckPattern(p string) error {
	wildcard, rest := Split(p)
	if strings.Contains(rest, "*") {
		return fmt.Errorf("FQDN pattern %q: a wildcard may only be the whole first label (\"*.\" or \"**.\")", p)
	}
	if err := CheckName(rest); err != nil {
		return fmt.Errorf("FQDN pattern %q: %w", p, err)
	}
	if wildcard != "" && !strings.Contains(rest, ".") {
		return fmt.Errorf("FQDN pattern %q: a wildcard needs at least two labels after it", p)
	}
	return nil
}

// Match reports whether a canonical name matches a valid pattern. It does
// not allocate.
func Match(pattern, name string) bool {
	wildcard, suffix := Split(pattern)
	if wildcard == "" {
		return pattern == name
	}
	if len(name) <= len(suffix)+1 || !strings.HasSuffix(name, suffix) || name[len(name)-len(suffix)-1] != '.' {
		return false
	}
	head := name[:len(name)-len(suffix)-1]
	if wildcard == "*" {
		return head != "" && !strings.Contains(head, ".")
	}
	return head != "" && head[0] != '.' && head[len(head)-1] != '.' && !strings.Contains(head, "..")
}

// Under reports whether a canonical name is domain or below it. No name is
// under the empty domain.
func Under(name, domain string) bool {
	if domain == "" {
		return false
	}
	return name == domain || len(name) > len(domain) && strings.HasSuffix(name, domain) && name[len(name)-len(domain)-1] == '.'
}
