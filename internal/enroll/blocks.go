package enroll

import (
	"fmt"
	"slices"
)

// RemoveBlocks cuts the [[kind]] blocks called names (`wardgate grant
// prune` passes "rule" and the expired rules) out of the policy text and
// returns the rest, byte for byte as it was. Each block is its blockSpan:
// the comments above a header stay, the comments glued below its last key
// go with it. A name without exactly one block is an error, and nothing is
// cut.
func RemoveBlocks(text []byte, kind string, names []string) ([]byte, error) {
	lines := splitLines(text)
	var cut []blockSpan
	for _, name := range names {
		n := 0
		for _, sp := range blockSpans(lines, kind) {
			if sp.name == name {
				cut = append(cut, sp)
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("%s %q: %d [[%s]] blocks with name = %q, want one", kind, name, n, kind, name)
		}
	}
	slices.SortFunc(cut, func(a, b blockSpan) int { return b.start - a.start })
	for _, sp := range cut { // from the end, so that earlier spans stay put
		lines = cutSpan(lines, sp)
	}
	return joinLines(lines), nil
}

// cutSpan returns lines without sp. When the cut leaves two runs of blank
// lines together, the second run goes; a block that ended the file takes
// the blank lines before it along (AppendBlock adds one).
func cutSpan(lines [][]byte, sp blockSpan) [][]byte {
	before, kept := lines[:sp.start], lines[sp.end:]
	if len(kept) == 0 {
		for len(before) > 0 && isBlank(before[len(before)-1]) {
			before = before[:len(before)-1]
		}
	}
	if len(before) == 0 || isBlank(before[len(before)-1]) {
		for len(kept) > 0 && isBlank(kept[0]) {
			kept = kept[1:]
		}
	}
	return append(slices.Clone(before), kept...)
}
