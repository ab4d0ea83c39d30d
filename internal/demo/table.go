package demo

import (
	"fmt"
	"io"
	"strings"
)

// Verdicts as the table prints them. allow, deny, blocked and revoked come
// from flow.allow, flow.deny, dns.block and flow.revoked; answer and
// nxdomain from dns.query's rcode; reloaded from config.reload;
// quarantined and refused from the quarantine scene (quarantine.go).
const (
	vAllow    = "allow"
	vDeny     = "deny"
	vBlocked  = "blocked"
	vRevoked  = "revoked"
	vAnswer   = "answer"
	vNXDomain = "nxdomain"
	vReloaded = "reloaded"
)

// row is one line of the table.
type row struct {
	step, who, what, where, verdict, why string
}

// table prints the rows as they come, with scene headings between them,
// and counts the verdicts for the summary.
type table struct {
	w      io.Writer
	counts map[string]int
	rows   int
	scene  int
	step   int // within the scene: 1a, 1b, ...
}

var widths = [...]int{4, 16, 29, 5, 11}

func newTable(w io.Writer) *table {
	return &table{w: w, counts: make(map[string]int)}
}

func (t *table) header() {
	t.line("STEP", "WHO", "WHAT", "WHERE", "VERDICT", "RULE / REASON")
	t.line(strings.Repeat("─", widths[0]), strings.Repeat("─", widths[1]), strings.Repeat("─", widths[2]),
		strings.Repeat("─", widths[3]), strings.Repeat("─", widths[4]), strings.Repeat("─", 30))
}

func (t *table) line(cols ...string) {
	var b strings.Builder
	for i, c := range cols {
		if i < len(widths) {
			fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			// A value wider than its column pushes the rest right rather
			// than being cut: the table stays honest.
			continue
		}
		b.WriteString(c)
	}
	fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
}

// heading starts scene n with a short title and a sentence of context.
func (t *table) heading(title, context string) {
	t.scene++
	t.step = 0
	fmt.Fprintf(t.w, "\n── %d. %s\n", t.scene, title)
	if context != "" {
		fmt.Fprintf(t.w, "   %s\n", context)
	}
}

// add prints a row, numbering it within the scene.
func (t *table) add(r row) {
	if r.step == "" {
		r.step = fmt.Sprintf("%d%c", t.scene, 'a'+rune(t.step))
		t.step++
	}
	t.rows++
	t.counts[r.verdict]++
	t.line(r.step, r.who, r.what, r.where, r.verdict, r.why)
}

// note prints what a client experienced, under the rows it explains.
func (t *table) note(format string, args ...any) {
	fmt.Fprintf(t.w, "%*s↳ %s\n", widths[0]+2, "", fmt.Sprintf(format, args...))
}

// diff prints the lines of a policy change, as the operator made it,
// under a heading that says where they are.
func (t *table) diff(where string, lines []string) {
	fmt.Fprintf(t.w, "%*spolicy.toml, %s:\n", widths[0]+2, "", where)
	for _, l := range lines {
		fmt.Fprintf(t.w, "%*s%s\n", widths[0]+4, "", l)
	}
}
