package suggest

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/enroll"
	"github.com/wardgate/wardgate/policy"
)

// listCap bounds the names and flows a comment lists; the rest are counted.
const listCap = 10

// WriteTOML writes the proposals as a policy.toml snippet: a summary, then
// for each proposal its evidence as comments, its [[rule]] and a [[test]]
// asserting the new access, then, as comments only, the flows held back
// and the rule that holds each. The same Result always gives the same
// bytes.
func (r *Result) WriteTOML(w io.Writer) error {
	var b bytes.Buffer
	c := r.Counts
	fmt.Fprintf(&b, "# wardgate suggest: %s read; %s proposed for %s (group threshold %s)\n",
		plural(c.Observed, "denial", "denials"), plural(len(r.Proposals), "rule", "rules"), plural(c.Proposed, "flow", "flows"),
		strconv.FormatFloat(r.GroupThreshold, 'f', -1, 64))
	fmt.Fprintf(&b, "#   allowed by this policy already: %d; unknown identity, service or port: %d\n", c.Allowed, c.Unknown)
	listed := ""
	if c.Held > 0 {
		listed = " (listed at the end)"
	}
	fmt.Fprintf(&b, "#   held back by a deny rule, a time window or an expiry: %s%s\n", plural(c.Held, "flow", "flows"), listed)
	b.WriteString("# Review each rule: a group or site grants its members that were not seen too.\n")
	for _, p := range r.Proposals {
		b.WriteByte('\n')
		p.writeTOML(&b)
	}
	if len(r.Held) > 0 {
		b.WriteString("\n# Not proposed (decide these yourself):\n")
		for _, h := range r.Held {
			fmt.Fprintf(&b, "# %s: %s\n", heldHead(h), tallyText(h.Tally))
			for i, f := range h.Flows {
				if i == listCap {
					fmt.Fprintf(&b, "#   and %d more\n", len(h.Flows)-listCap)
					break
				}
				fmt.Fprintf(&b, "#   %s -> %s:%s: %s\n", f.Identity, f.Service, f.Port, tallyText(f.Tally))
			}
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func heldHead(h Held) string {
	switch h.Reason {
	case policy.ReasonDenyRule:
		return "blocked by deny rule " + strconv.Quote(h.Rule)
	case policy.ReasonOutsideTimeWindow:
		return "outside the time window of rule " + strconv.Quote(h.Rule)
	case policy.ReasonExpired:
		return "after rule " + strconv.Quote(h.Rule) + " expired"
	}
	return h.Reason.String() + " " + strconv.Quote(h.Rule)
}

func (p *Proposal) writeTOML(b *bytes.Buffer) {
	ids := 0
	for _, pr := range p.From {
		ids += len(pr.Seen)
	}
	fmt.Fprintf(b, "# %s: %s; %s seen\n", p.Name, tallyText(p.Tally), plural(ids, "identity", "identities"))
	for _, pr := range p.From {
		if pr.Members == 1 && len(pr.Seen) == 1 && pr.Seen[0] == pr.Name {
			fmt.Fprintf(b, "#   %s: %s\n", pr.Name, tallyText(pr.Tally))
			continue
		}
		fmt.Fprintf(b, "#   %s: %d of %d members seen, %s", pr.Name, len(pr.Seen), pr.Members, tallyText(pr.Tally))
		if len(pr.Unseen) > 0 {
			fmt.Fprintf(b, " (not seen: %s)", capList(pr.Unseen))
		}
		b.WriteByte('\n')
	}
	from := make([]string, len(p.From))
	for i, pr := range p.From {
		from[i] = strconv.Quote(pr.Name)
	}
	ports := make([]string, len(p.Ports))
	for i, r := range p.Ports {
		ports[i] = strconv.Quote(r.String())
	}
	b.WriteString("[[rule]]\n")
	fmt.Fprintf(b, "name = %q\n", p.Name)
	fmt.Fprintf(b, "from = [%s]\n", strings.Join(from, ", "))
	fmt.Fprintf(b, "to = [%q]\n", p.Service)
	fmt.Fprintf(b, "ports = [%s]\n", strings.Join(ports, ", "))
	first, last := p.Tally.First.UTC().Format(time.DateOnly), p.Tally.Last.UTC().Format(time.DateOnly)
	when := "on " + first
	if first != last {
		when = first + " to " + last
	}
	fmt.Fprintf(b, "reason = %q\n", fmt.Sprintf("suggested from %s seen %s", plural(p.Tally.Flows, "flow", "flows"), when))
	b.WriteString("\n[[test]]\n")
	fmt.Fprintf(b, "from = %q\n", p.TestFrom)
	fmt.Fprintf(b, "to = %q\n", p.TestTo)
	fmt.Fprintf(b, "at = %q\n", p.TestAt.UTC().Format(time.RFC3339Nano))
	b.WriteString("expect = \"allow\"\n")
}

// tallyText is "12 flows, 2026-11-23T08:00:00Z to 2026-11-30T17:02:11Z",
// or "1 flow, at 2026-11-23T08:00:00Z".
func tallyText(t Tally) string {
	first, last := t.First.UTC().Format(time.RFC3339), t.Last.UTC().Format(time.RFC3339)
	if first == last {
		return plural(t.Flows, "flow", "flows") + ", at " + first
	}
	return plural(t.Flows, "flow", "flows") + ", " + first + " to " + last
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func capList(names []string) string {
	if len(names) <= listCap {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:listCap], ", "), len(names)-listCap)
}

// Apply returns the policy text orig (of the file called name) with the
// proposals appended, and the policy it makes. It refuses, writing
// nothing anywhere, when the result would not pass `wardgate check`: a
// policy error, or a [[test]] that fails (its own or one of the file's).
func (r *Result) Apply(name string, orig []byte) ([]byte, *policy.Policy, error) {
	var snippet bytes.Buffer
	r.WriteTOML(&snippet)
	out := enroll.AppendBlock(orig, snippet.String())
	pol, err := policy.Parse(name, out)
	if err != nil {
		return nil, nil, fmt.Errorf("the policy with the proposals would be invalid: %w", err)
	}
	if failed := pol.FailedTests(); len(failed) > 0 {
		// Tests that fail without the proposals too are not their doing.
		if before, err := policy.Parse(name, orig); err == nil {
			if failed := before.FailedTests(); len(failed) > 0 {
				return nil, nil, fmt.Errorf("the policy fails %d of its tests before the proposals (see wardgate check): %w", len(failed), &policy.LoadError{Problems: failed})
			}
		}
		return nil, nil, fmt.Errorf("the policy with the proposals fails %d of its tests: %w", len(failed), &policy.LoadError{Problems: failed})
	}
	return out, pol, nil
}
