package dnsfilter

import (
	"fmt"
	"strings"
)

// nameSet is a set of names and FQDN patterns: "a.example.org" exact,
// "*.example.org" exactly one more label, "**.example.org" one or more; the
// apex is never implied. Lookups cost one map probe per label of the name
// and do not allocate. The zero value is empty; a nameSet is not modified
// after it is built, so it is safe for concurrent lookups.
type nameSet struct {
	exact map[string]string // name -> entry as written (for the audit log)
	one   map[string]string // "*.S": S -> entry
	many  map[string]string // "**.S": S -> entry
}

// add inserts a pattern, already lower case without a trailing dot.
func (s *nameSet) add(pattern string) error {
	if err := checkPattern(pattern); err != nil {
		return err
	}
	m, key := &s.exact, pattern
	switch {
	case strings.HasPrefix(pattern, "**."):
		m, key = &s.many, pattern[3:]
	case strings.HasPrefix(pattern, "*."):
		m, key = &s.one, pattern[2:]
	}
	if *m == nil {
		*m = make(map[string]string)
	}
	(*m)[key] = pattern
	return nil
}

// len is the number of entries.
func (s *nameSet) len() int { return len(s.exact) + len(s.one) + len(s.many) }

// match returns the entry matching name (lower case, no trailing dot), or
// "" when none does.
func (s *nameSet) match(name string) string {
	if name == "" {
		return ""
	}
	if e, ok := s.exact[name]; ok {
		return e
	}
	i := strings.IndexByte(name, '.')
	if i < 0 {
		return ""
	}
	parent := name[i+1:]
	if e, ok := s.one[parent]; ok {
		return e
	}
	if len(s.many) == 0 {
		return ""
	}
	for {
		if e, ok := s.many[parent]; ok {
			return e
		}
		i = strings.IndexByte(parent, '.')
		if i < 0 {
			return ""
		}
		parent = parent[i+1:]
	}
}

// checkPattern accepts a host name, optionally prefixed by "*." or "**.",
// of letters, digits, '-' and '_' labels.
func checkPattern(p string) error {
	name := strings.TrimPrefix(strings.TrimPrefix(p, "**."), "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid name %q", p)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("invalid name %q: empty or long label", p)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("invalid name %q: character %q", p, c)
			}
		}
	}
	return nil
}

// canonical lower-cases a name and drops the trailing dot.
func canonical(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// under reports whether name is domain or below it.
func under(name, domain string) bool {
	if domain == "" {
		return false
	}
	return name == domain || len(name) > len(domain) && strings.HasSuffix(name, domain) && name[len(name)-len(domain)-1] == '.'
}
