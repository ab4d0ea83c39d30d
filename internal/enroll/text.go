package enroll

import (
	"bytes"
	"fmt"
	"regexp"

	"github.com/BurntSushi/toml"
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

// RemoveIdentity cuts the [[identity]] block of the identity called name
// out of the policy text and returns the rest, byte for byte as it was.
//
// The block runs from its header to the next table header (or the end of
// the file). The comment lines directly above the next header, and the
// blank lines before them, belong to that next block and stay; a comment
// that follows the block's last key with no blank line between belongs to
// the block and goes with it. Comments above the removed header stay too:
// they may introduce a whole section. When the cut leaves two runs of blank
// lines together, the second run goes.
func RemoveIdentity(text []byte, name string) ([]byte, error) {
	lines := splitLines(text)
	var headers []int
	for i, l := range lines {
		if headerRE.Match(l) {
			headers = append(headers, i)
		}
	}
	found := -1
	for hi, h := range headers {
		m := headerRE.FindSubmatch(lines[h])
		if string(m[1]) != "identity" || !bytes.HasPrefix(bytes.TrimSpace(lines[h]), []byte("[[")) {
			continue
		}
		end := len(lines)
		if hi+1 < len(headers) {
			end = headers[hi+1]
		}
		if blockName(lines[h:end]) == name {
			if found >= 0 {
				return nil, fmt.Errorf("identity %q has more than one [[identity]] block", name)
			}
			found = h
		}
	}
	if found < 0 {
		return nil, fmt.Errorf("no [[identity]] block with name = %q", name)
	}
	start := found
	end := len(lines)
	for _, h := range headers {
		if h > start {
			end = h
			break
		}
	}
	// Give back the next block's preamble: trailing comments and blanks.
	// (The end of the file is treated like a header.)
	cut := end
	for cut > start+1 && (isBlank(lines[cut-1]) || isComment(lines[cut-1])) {
		cut--
	}
	// Comments glued to the block's last key belong to the block.
	for cut < end && isComment(lines[cut]) {
		cut++
	}
	kept := lines[cut:]
	before := lines[:start]
	if len(kept) == 0 {
		// The block was the file's end: the blank lines before it
		// separated it from the rest (AppendIdentity adds one).
		for len(before) > 0 && isBlank(before[len(before)-1]) {
			before = before[:len(before)-1]
		}
	}
	if len(before) == 0 || isBlank(before[len(before)-1]) {
		for len(kept) > 0 && isBlank(kept[0]) {
			kept = kept[1:]
		}
	}
	var out []byte
	for _, l := range before {
		out = append(out, l...)
	}
	for _, l := range kept {
		out = append(out, l...)
	}
	return out, nil
}

// blockName decodes one [[identity]] block on its own and returns its
// name; "" when the block does not decode.
func blockName(block [][]byte) string {
	var doc struct {
		Identity []struct {
			Name string `toml:"name"`
		} `toml:"identity"`
	}
	if _, err := toml.Decode(string(bytes.Join(block, nil)), &doc); err != nil || len(doc.Identity) != 1 {
		return ""
	}
	return doc.Identity[0].Name
}
