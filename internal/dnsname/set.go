package dnsname

import "strings"

// Set is a set of names and patterns indexed for lookups (the DNS filter's
// blocklists and allow_internal): it answers as Match over every pattern
// would, at one map probe per label of the name and without allocating.
// The zero value is empty. A Set is not modified after it is built, so it
// is safe for concurrent lookups.
type Set struct {
	exact map[string]string // name -> entry as written (for the audit log)
	one   map[string]string // "*.S": S -> entry
	many  map[string]string // "**.S": S -> entry
}

// Add inserts a canonical pattern, or returns CheckPattern's error.
func (s *Set) Add(pattern string) error {
	if err := CheckPattern(pattern); err != nil {
		return err
	}
	wildcard, key := Split(pattern)
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

// Len is the number of entries.
func (s *Set) Len() int { return len(s.exact) + len(s.one) + len(s.many) }

// Match returns the pattern, as added, that matches a canonical name, or ""
// when none does. When several match, an exact name wins over "*." and
// "*." over "**.", and a longer "**." suffix over a shorter one.
func (s *Set) Match(name string) string {
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
