package enroll

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"

	"github.com/BurntSushi/toml"
	"github.com/wardgate/wardgate/internal/wgkey"
)

// headerRE matches a TOML table header line: [name] or [[name]], bare
// dotted keys only (as the policy uses), with an optional comment. A line
// of a multi-line array such as `["a", "b"]` does not match: its quotes are
// not in a bare key.
var headerRE = regexp.MustCompile(`^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$`)

// splitLines splits text into lines that keep their line endings, so that
// joining them gives the text back byte for byte.
func splitLines(text []byte) [][]byte {
	var out [][]byte
	for len(text) > 0 {
		i := bytes.IndexByte(text, '\n')
		if i < 0 {
			out = append(out, text)
			break
		}
		out = append(out, text[:i+1])
		text = text[i+1:]
	}
	return out
}

func isBlank(l []byte) bool   { return len(bytes.TrimSpace(l)) == 0 }
func isComment(l []byte) bool { return bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) }

// blockSpan is where one [[identity]] (or [[rule]], ...) block lies in the
// lines of a policy: from its header to after its last key and the comments glued to
// it. The comment lines directly above the next header, and the blank
// lines before them, belong to that next block; a comment that follows the
// block's last key with no blank line between belongs to the block, unless
// it is a retired-address line (those stay wherever a block goes).
type blockSpan struct {
	name       string // "" when the block does not decode on its own
	start, end int    // lines[start:end]
}

// blockSpans finds the [[kind]] blocks of the text's lines, in file order.
func blockSpans(lines [][]byte, kind string) []blockSpan {
	var headers []int
	for i, l := range lines {
		if headerRE.Match(l) {
			headers = append(headers, i)
		}
	}
	var out []blockSpan
	for hi, h := range headers {
		m := headerRE.FindSubmatch(lines[h])
		if string(m[1]) != kind || !bytes.HasPrefix(bytes.TrimSpace(lines[h]), []byte("[[")) {
			continue
		}
		next := len(lines)
		if hi+1 < len(headers) {
			next = headers[hi+1]
		}
		// Give back the next block's preamble: trailing comments and
		// blanks (the end of the file is treated like a header); then take
		// the comments glued to the block's last key.
		end := next
		for end > h+1 && (isBlank(lines[end-1]) || isComment(lines[end-1])) {
			end--
		}
		for end < next && isComment(lines[end]) && !retiredRE.Match(lines[end]) {
			end++
		}
		out = append(out, blockSpan{name: blockName(lines[h:next], kind), start: h, end: end})
	}
	return out
}

// findIdentity returns the span of the one block of the identity called name.
func findIdentity(lines [][]byte, name string) (blockSpan, error) {
	found := blockSpan{start: -1}
	for _, sp := range blockSpans(lines, "identity") {
		if sp.name != name {
			continue
		}
		if found.start >= 0 {
			return found, fmt.Errorf("identity %q has more than one [[identity]] block", name)
		}
		found = sp
	}
	if found.start < 0 {
		return found, fmt.Errorf("no [[identity]] block with name = %q", name)
	}
	return found, nil
}

// RemoveIdentity cuts the [[identity]] block of the identity called name
// out of the policy text and returns the rest, byte for byte as it was.
//
// The block is its blockSpan. Comments above the removed header stay:
// they may introduce a whole section. When the cut leaves two runs of blank
// lines together, the second run goes.
func RemoveIdentity(text []byte, name string) ([]byte, error) {
	lines := splitLines(text)
	sp, err := findIdentity(lines, name)
	if err != nil {
		return nil, err
	}
	return joinLines(cutSpan(lines, sp)), nil
}

// retiredRE matches a retired-address line, the record `peer remove` leaves
// where an identity's block was (see RetiredAddresses).
var retiredRE = regexp.MustCompile(`^\s*#\s*retired address ([0-9A-Fa-f.:]+)(?:[\s(]|$)`)

// RetireIdentity replaces the [[identity]] block of the identity called
// name with the one line note (a retired-address line), leaving every
// other line as it was.
func RetireIdentity(text []byte, name, note string) ([]byte, error) {
	lines := splitLines(text)
	sp, err := findIdentity(lines, name)
	if err != nil {
		return nil, err
	}
	// lines[:sp.start] ends with a newline: only a file's last line may not.
	return joinLines(lines[:sp.start], [][]byte{[]byte(note + "\n")}, lines[sp.end:]), nil
}

// RetiredAddresses lists the addresses of the policy text's retired-address
// lines: comments of the form
//
//	# retired address 100.80.0.5 (identity desk-1, removed 2026-11-30): ...
//
// which `peer remove` writes in place of the block it removes. NextAddress
// never hands these out. The record is a comment so that it lives in the
// one file every gateway and every operator's checkout share, without a
// key the policy would have to define; deleting the line frees the address.
func RetiredAddresses(text []byte) []netip.Addr {
	var out []netip.Addr
	for _, l := range splitLines(text) {
		m := retiredRE.FindSubmatch(l)
		if m == nil {
			continue
		}
		a, err := netip.ParseAddr(string(m[1]))
		if err != nil { // "100.80.0.5: why", the colon taken for IPv6
			a, err = netip.ParseAddr(string(bytes.TrimSuffix(m[1], []byte(":"))))
		}
		if err == nil {
			out = append(out, a)
		}
	}
	return out
}

// InsertIdentity puts block after the last [[identity]] block of the policy
// text (after one blank line, and with one blank line before what follows),
// so that identities stay together; with no identity yet, or when the last
// one ends the file, it appends (AppendBlock). Every other line stays as
// it was.
func InsertIdentity(orig []byte, block string) []byte {
	lines := splitLines(orig)
	spans := blockSpans(lines, "identity")
	if len(spans) == 0 || spans[len(spans)-1].end == len(lines) {
		return AppendBlock(orig, block)
	}
	end := spans[len(spans)-1].end
	mid := "\n" + block
	if !isBlank(lines[end]) {
		mid += "\n"
	}
	return joinLines(lines[:end], [][]byte{[]byte(mid)}, lines[end:])
}

// keyLineRE matches the `key = ...` line of a block.
var keyLineRE = regexp.MustCompile(`^\s*key\s*=`)

// ReplaceKey replaces old with new on the `key =` line of the [[identity]]
// block of the identity called name.
func ReplaceKey(text []byte, name string, old, new wgkey.Public) ([]byte, error) {
	lines := splitLines(text)
	sp, err := findIdentity(lines, name)
	if err != nil {
		return nil, err
	}
	at := -1
	for i := sp.start; i < sp.end; i++ {
		if keyLineRE.Match(lines[i]) && bytes.Contains(lines[i], []byte(old.String())) {
			if at >= 0 {
				return nil, fmt.Errorf("identity %q has more than one key line", name)
			}
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("identity %q: no line key = %q in its block", name, old.String())
	}
	out := slices.Clone(lines)
	out[at] = bytes.Replace(lines[at], []byte(old.String()), []byte(new.String()), 1)
	return joinLines(out), nil
}

func joinLines(parts ...[][]byte) []byte {
	var out []byte
	for _, p := range parts {
		for _, l := range p {
			out = append(out, l...)
		}
	}
	return out
}

// blockName decodes one [[kind]] block on its own and returns its name; ""
// when the block does not decode.
func blockName(block [][]byte, kind string) string {
	var doc map[string][]struct {
		Name string `toml:"name"`
	}
	if _, err := toml.Decode(string(bytes.Join(block, nil)), &doc); err != nil || len(doc[kind]) != 1 {
		return ""
	}
	return doc[kind][0].Name
}
