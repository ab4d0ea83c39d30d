package dnsfilter

import (
	"strings"

	"github.com/wardgate/wardgate/internal/dnsname"
)

// nameSet is a set of names and FQDN patterns, indexed for lookups: it
// matches as dnsname.Match, with the rules of internal/dnsname (the same as
// for policy egress patterns). Lookups cost one map probe per label of the
// name and do not allocate. The zero value is empty; a nameSet is not modified
// after it is built, so it is safe for concurrent lookups.
type nameSet struct {
	exact map[string]string // name -> entry as written (for the audit log)
	one   map[string]string // "*.S": S -> entry
	many  map[string]string // "**.S": S -> entry
}

// add inserts a pattern, already lower case without a trailing dot.
func (s *nameSet) add(pattern string) error {
	if err := dnsname.CheckPattern(pattern); err != nil {
		return err
	}
	wildcard, key := dnsname.Split(pattern)
	m := &s.exact
	switch wildcard {
	case "**":
		m = &s.many
	case "*":
		m = &s.one
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
