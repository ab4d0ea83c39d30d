package policy

import "strings"

// BurntSushi/toml keeps key positions to itself, so the loader finds them
// in the text: a small scanner that knows just enough TOML (headers, keys,
// strings, comments, brackets spanning lines) to say on which line each
// table, each element of an array of tables and each of their keys starts.
// When it cannot tell (inline tables, odd layouts), problems fall back to the
// element's header line, then to no position at all.

// pos is a 1-based line and column; the zero value means unknown.
type pos struct{ line, col int }

// elemPos is where one table (or one element of an array of tables) and its
// keys are.
type elemPos struct {
	head pos
	keys map[string]pos // first component of each key
}

func (e *elemPos) key(k string) pos {
	if e == nil {
		return pos{}
	}
	if p, ok := e.keys[k]; ok {
		return p
	}
	return e.head
}

// fileIndex is the layout of one policy file.
type fileIndex struct {
	top    map[string]pos        // top-level keys and table headers
	tables map[string]*elemPos   // [name]
	arrays map[string][]*elemPos // [[name]], in file order
}

func (fi *fileIndex) elem(kind string, i int) *elemPos {
	if l := fi.arrays[kind]; i < len(l) {
		return l[i]
	}
	if p, ok := fi.top[kind]; ok {
		return &elemPos{head: p}
	}
	return nil
}

// indexFile scans TOML text. It never fails: the real parser has already
// accepted the text, this only finds positions.
func indexFile(text string) *fileIndex {
	fi := &fileIndex{
		top:    map[string]pos{},
		tables: map[string]*elemPos{},
		arrays: map[string][]*elemPos{},
	}
	var cur *elemPos // nil: top level
	var sc lineScanner
	for n, line := range strings.Split(text, "\n") {
		lineNo := n + 1
		if sc.depth == 0 && sc.multi == "" {
			trimmed := strings.TrimLeft(line, " \t")
			col := len(line) - len(trimmed) + 1
			switch {
			case strings.HasPrefix(trimmed, "[["):
				name := headerName(trimmed[2:], "]]")
				e := &elemPos{head: pos{lineNo, col}, keys: map[string]pos{}}
				fi.arrays[name] = append(fi.arrays[name], e)
				if _, ok := fi.top[name]; !ok {
					fi.top[name] = e.head
				}
				cur = e
				continue
			case strings.HasPrefix(trimmed, "["):
				name := headerName(trimmed[1:], "]")
				e := &elemPos{head: pos{lineNo, col}, keys: map[string]pos{}}
				if _, ok := fi.tables[name]; !ok {
					fi.tables[name] = e
					fi.top[name] = e.head
				}
				cur = e
				continue
			case trimmed == "" || trimmed[0] == '#':
				continue
			}
			if eq := keyEnd(trimmed); eq > 0 {
				k := firstKey(trimmed[:eq])
				if cur == nil {
					if _, ok := fi.top[k]; !ok {
						fi.top[k] = pos{lineNo, col}
					}
				} else if _, ok := cur.keys[k]; !ok {
					cur.keys[k] = pos{lineNo, col}
				}
				sc.scan(trimmed[eq+1:])
				continue
			}
		}
		sc.scan(line)
	}
	return fi
}

// headerName returns the first key of a table header such as `rule]]` or
// ` "a b" . c ]`.
func headerName(s, closing string) string {
	if i := strings.Index(s, closing); i >= 0 {
		s = s[:i]
	}
	return firstKey(s)
}

// firstKey returns the first component of a (possibly dotted, quoted) key.
func firstKey(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if q := s[0]; q == '"' || q == '\'' {
		if j := strings.IndexByte(s[1:], q); j >= 0 {
			return s[1 : 1+j]
		}
		return s[1:]
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// keyEnd returns the index of the '=' that ends the key at the start of s,
// or -1.
func keyEnd(s string) int {
	inQ := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQ != 0:
			if c == inQ {
				inQ = 0
			}
		case c == '"' || c == '\'':
			inQ = c
		case c == '=':
			return i
		case c == '#' || c == '[' || c == '{':
			return -1
		}
	}
	return -1
}

// lineScanner follows strings, comments and bracket depth across lines.
type lineScanner struct {
	depth int    // open [ and {
	multi string // `"""` or `'''` while inside a multi-line string
}

func (sc *lineScanner) scan(s string) {
	for i := 0; i < len(s); i++ {
		if sc.multi != "" {
			j := strings.Index(s[i:], sc.multi)
			if j < 0 {
				return
			}
			i += j + 2
			sc.multi = ""
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '[', '{':
			sc.depth++
		case ']', '}':
			if sc.depth > 0 {
				sc.depth--
			}
		case '"', '\'':
			if strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`) {
				sc.multi = s[i : i+3]
				i += 2
				continue
			}
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		}
	}
}
