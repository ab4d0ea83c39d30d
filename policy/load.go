package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// maxFileSize bounds what the loader accepts; a policy is kilobytes to a few
// megabytes.
const maxFileSize = 64 << 20

// Bounds on what one value may hold, so that no message, log line or table
// grows with a hostile file: every string value (and every key) is at most
// maxValueLen bytes, every name (site, identity, group, rule) at most
// maxNameLen. DNS names keep their RFC 1035 limits (63-byte labels,
// 253-byte names). A message quotes at most quoteLen bytes of a value.
const (
	maxValueLen = 256
	maxNameLen  = 64
	quoteLen    = 40
	maxMsgLen   = 1024
)

// Quote formats s for a message like %q, but cut to its first 40 bytes
// with the full length said, so that a huge value gives a short message.
func Quote(s string) string {
	if len(s) <= quoteLen {
		return strconv.Quote(s)
	}
	cut := quoteLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}

// parse is Parse: decode, index positions, build and validate, compile.
func parse(name string, data []byte) (*Policy, error) {
	if len(data) > maxFileSize {
		return nil, &LoadError{Problems: []Problem{{File: name, Msg: fmt.Sprintf("file is %d bytes, more than the %d accepted", len(data), maxFileSize)}}}
	}
	sum := sha256.Sum256(data)
	text := string(data)

	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil, &LoadError{Problems: []Problem{tomlProblem(name, err)}}
	}
	b := &builder{file: name, now: time.Now(), idx: indexFile(text), ruleNames: map[string]bool{}}
	p := b.build(raw)
	if len(b.problems) > 0 {
		return nil, &LoadError{Problems: sortProblems(b.problems)}
	}
	p.file = name
	p.hash = hex.EncodeToString(sum[:])[:16]
	p.compile(b.ruleSpecs, b.now)
	b.checkTestTimes(p)
	if len(b.problems) > 0 {
		return nil, &LoadError{Problems: sortProblems(b.problems)}
	}
	p.warnings = sortProblems(append(b.warnings, b.reachWarnings(p)...))
	return p, nil
}

// tomlProblem turns a TOML syntax error into a positioned Problem.
func tomlProblem(file string, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if len(msg) > maxMsgLen {
			msg = msg[:maxMsgLen] + "..."
		}
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s (after key %s)", msg, Quote(pe.LastKey))
		}
		return Problem{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Msg: "syntax error: " + msg}
	}
	return Problem{File: file, Msg: err.Error()}
}

func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
	return ps
}

// builder collects problems while it turns the decoded TOML into a Policy.
type builder struct {
	file     string
	now      time.Time // for warnings about expired rules and CanReach
	idx      *fileIndex
	problems []Problem
	warnings []Problem

	svcElems  []*elem // by Service.ID
	idElems   []*elem // by Identity.ID
	ruleElems []*elem // parallel to ruleSpecs
	ruleSpecs []*ruleSpec
	ruleNames map[string]bool
}

func (b *builder) errorAt(p pos, format string, args ...any) {
	b.problems = append(b.problems, Problem{File: b.file, Line: p.line, Col: p.col, Msg: capMsg(fmt.Sprintf(format, args...))})
}

func (b *builder) warnAt(p pos, format string, args ...any) {
	b.warnings = append(b.warnings, Problem{File: b.file, Line: p.line, Col: p.col, Msg: capMsg(fmt.Sprintf(format, args...))})
}

// capMsg is the last guard on message size; values are already bounded
// and quoted short, so it should never cut.
func capMsg(s string) string {
	if len(s) > maxMsgLen {
		return s[:maxMsgLen] + "..."
	}
	return s
}

// elem is one table of the file ([overlay] or an element of [[rule]] ...)
// with typed getters that report problems instead of failing.
type elem struct {
	b     *builder
	kind  string
	index int
	m     map[string]any
	pos   *elemPos
	label string // how messages name it: `rule "x"`, `test 3`
}

// elems returns the elements of the array of tables kind.
func (b *builder) elems(raw map[string]any, kind string) []*elem {
	v, ok := raw[kind]
	if !ok {
		return nil
	}
	list, ok := v.([]map[string]any)
	if !ok {
		if arr, isArr := v.([]any); isArr {
			ok = true
			for _, x := range arr {
				m, isMap := x.(map[string]any)
				ok = ok && isMap
				list = append(list, m)
			}
		}
	}
	if !ok {
		b.errorAt(b.idx.top[kind], "%s must be written as [[%s]] tables", kind, kind)
		return nil
	}
	out := make([]*elem, len(list))
	for i, m := range list {
		e := &elem{b: b, kind: kind, index: i, m: m, pos: b.idx.elem(kind, i)}
		e.label = fmt.Sprintf("%s %d", kind, i+1)
		if n, ok := m["name"].(string); ok && n != "" {
			e.label = kind + " " + Quote(n)
		}
		out[i] = e
	}
	return out
}

func (e *elem) at(key string) pos {
	if e.pos == nil {
		return pos{}
	}
	if key == "" {
		return e.pos.head
	}
	return e.pos.key(key)
}

// errorf reports a problem with key of this element.
func (e *elem) errorf(key, format string, args ...any) {
	e.b.errorAt(e.at(key), "%s: %s", e.label, fmt.Sprintf(format, args...))
}

func (e *elem) warnf(key, format string, args ...any) {
	e.b.warnAt(e.at(key), "%s: %s", e.label, fmt.Sprintf(format, args...))
}

func (e *elem) has(key string) bool { _, ok := e.m[key]; return ok }

// checkKeys reports every key that is not one of allowed.
func (e *elem) checkKeys(allowed ...string) {
	keys := make([]string, 0, len(e.m))
	for k := range e.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !contains(allowed, k) {
			e.errorf(k, "unknown key %s (known: %s)", Quote(k), strings.Join(allowed, ", "))
		}
	}
}

// str returns a string value; "" when absent or of the wrong type (reported).
func (e *elem) str(key string) string {
	v, ok := e.m[key]
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		e.errorf(key, "%s must be a string, not %s", key, tomlType(v))
	}
	if !e.bounded(key, s) {
		return ""
	}
	return s
}

// bounded reports a value longer than maxValueLen.
func (e *elem) bounded(key, s string) bool {
	if len(s) > maxValueLen {
		e.errorf(key, "%s %s is longer than the %d bytes accepted", key, Quote(s), maxValueLen)
		return false
	}
	return true
}

// required is str that reports a missing or empty value.
func (e *elem) required(key string) string {
	if !e.has(key) {
		e.errorf("", "missing %s", key)
		return ""
	}
	s := e.str(key)
	if v, ok := e.m[key].(string); ok && v == "" {
		e.errorf(key, "%s is empty", key)
	}
	return s
}

// strs returns an array of strings; nil when absent or wrong (reported).
func (e *elem) strs(key string) []string {
	v, ok := e.m[key]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		e.errorf(key, "%s must be an array of strings, not %s", key, tomlType(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			e.errorf(key, "%s must be an array of strings; it holds %s", key, tomlType(x))
			return nil
		}
		if !e.bounded(key, s) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (e *elem) boolean(key string) bool {
	v, ok := e.m[key]
	if !ok {
		return false
	}
	x, ok := v.(bool)
	if !ok {
		e.errorf(key, "%s must be true or false, not %s", key, tomlType(v))
	}
	return x
}

// timeValue accepts a TOML date-time or an RFC 3339 string.
func (e *elem) timeValue(key string) (time.Time, bool) {
	v, ok := e.m[key]
	if !ok {
		return time.Time{}, false
	}
	switch x := v.(type) {
	case time.Time:
		return x, true
	case string:
		t, err := time.Parse(time.RFC3339, x)
		if err != nil {
			e.errorf(key, "%s %s is not an RFC 3339 time such as 2026-03-02T09:30:00Z", key, Quote(x))
			return time.Time{}, false
		}
		return t, true
	}
	e.errorf(key, "%s must be an RFC 3339 time, not %s", key, tomlType(v))
	return time.Time{}, false
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return fmt.Sprintf("%T", v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
