package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// cmdDiff prints, for a reviewer of a policy change, the access it grants
// and removes: per identity and service, the ports gained and lost, with
// the rule that grants them (docs/operating.md, "Reviewing a change").
func cmdDiff(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("diff", stderr)
	at := fs.String("at", "", "time to decide at (RFC3339); default now")
	asJSON := fs.Bool("json", false, "print a JSON array of changes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "wardgate diff: want two policy files: OLD NEW")
		return 2
	}
	when := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintf(stderr, "wardgate diff: --at %q: want RFC3339, e.g. 2026-03-02T09:00:00Z\n", *at)
			return 2
		}
		when = t
	}
	var pols [2]*policy.Policy
	for i, f := range fs.Args() {
		_, p, err := loadAny(f)
		if err != nil {
			printErr(stderr, err)
			return 2
		}
		pols[i] = p
	}
	changes := policy.Diff(pols[0], pols[1], when)
	if *asJSON {
		if changes == nil {
			changes = []policy.AccessChange{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(changes)
		return 0
	}
	printDiff(stdout, changes)
	return 0
}

func printDiff(w io.Writer, changes []policy.AccessChange) {
	var gained, lost int
	for _, c := range changes {
		if c.Gained {
			gained++
		} else {
			lost++
		}
	}
	if len(changes) == 0 {
		fmt.Fprintln(w, "no access gained or lost")
		return
	}
	fmt.Fprintf(w, "access gained: %d, lost: %d\n", gained, lost)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range changes {
		if c.Gained {
			fmt.Fprintf(tw, "+ %s\t-> %s\t%s\tgranted by rule %s\n", c.Identity, c.Service, c.Port, c.Rule)
		} else {
			fmt.Fprintf(tw, "- %s\t-> %s\t%s\twas rule %s, now %s\n", c.Identity, c.Service, c.Port, c.Rule, c.Reason)
		}
	}
	tw.Flush()
}
