package policy

// Nearest returns the candidate closest to name by edit distance, when it
// is close enough to be a likely typo (at most a third of the name's
// length, and at least 1): the "did you mean" of messages. ok is false
// when none is.
func Nearest(name string, candidates []string) (best string, ok bool) {
	if name == "" {
		return "", false
	}
	limit := max(1, len(name)/3)
	bestDist := limit + 1
	for _, c := range candidates {
		// Distances up to bestDist are exact (a tie goes to the smaller name).
		if d := editDistance(name, c, bestDist+1); d < bestDist || d == bestDist && ok && c < best {
			best, bestDist, ok = c, d, true
		}
	}
	return best, ok && bestDist <= limit
}

// didYouMean is Nearest as the tail of a message: ` (did you mean "x"?)`.
func didYouMean(name string, candidates []string) string {
	if c, ok := Nearest(name, candidates); ok {
		return " (did you mean " + Quote(c) + "?)"
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b in bytes, or any
// value >= bound once it is sure to reach bound.
func editDistance(a, b string, bound int) int {
	if d := len(a) - len(b); d >= bound || -d >= bound {
		return bound
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= bound {
			return bound
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
