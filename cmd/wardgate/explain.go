package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// explainResult is the --json shape of docs/design.md, plus the port asked about
// and the sentence.
type explainResult struct {
	Verdict string `json:"verdict"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason"`
	Port    string `json:"port,omitempty"`
	// Expires is when the allowing rule stops granting (or when the rule
	// that would have allowed expired), RFC 3339; absent when never.
	Expires string `json:"expires,omitempty"`
	Text    string `json:"explanation,omitempty"`
}

// cmdExplain answers one question: may identity reach service on port at
// time? Without a port, every port the service offers is explained, and
// --json reports the first allowed one (or the first, when none is).
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	from := fs.String("from", "", "identity name")
	to := fs.String("to", "", "SERVICE[:PORT[/PROTO]]")
	at := fs.String("at", "", "time to decide at (RFC3339); default now")
	asJSON := fs.Bool("json", false, "print one JSON object")
	quarantined := fs.Bool("quarantined", false, "explain as if the identity were quarantined (with -c gateway.toml the running gateway is asked)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || *from == "" || *to == "" {
		fmt.Fprintln(stderr, "wardgate explain: -c FILE, --from IDENTITY and --to SERVICE[:PORT[/PROTO]] are required")
		return 2
	}
	when := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintf(stderr, "wardgate explain: --at %q: want RFC3339, e.g. 2026-03-02T09:00:00Z\n", *at)
			return 2
		}
		when = t
	}
	cfg, pol, err := loadAny(*file)
	if err != nil {
		printErr(stderr, err)
		return 2
	}
	id := pol.Identity(*from)
	if id == nil {
		fmt.Fprintf(stderr, "wardgate explain: unknown identity %s in %s%s\n", policy.Quote(*from), pol.File(), identityHint(pol, *from))
		return 2
	}
	svcName, ports, err := parseTarget(*to)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate explain: --to %q: %v\n", *to, err)
		return 2
	}
	svc := pol.Service(svcName)
	if svc == nil {
		var names []string
		for _, s := range pol.Services() {
			names = append(names, s.Name)
		}
		fmt.Fprintf(stderr, "wardgate explain: unknown service %s in %s%s\n", policy.Quote(svcName), pol.File(), didYouMean(svcName, names))
		return 2
	}
	if ports == nil {
		ports = svc.Ports
	}
	explain := pol.Explain
	if *quarantined || cfg != nil && quarantinedNow(*file, id.Name, stderr) {
		explain = pol.ExplainQuarantined
	}
	var results []explainResult
	for _, pr := range ports {
		d, text := explain(id, svc, pr.Lo, pr.Proto, when)
		r := explainResult{
			Verdict: d.Verdict.String(), Rule: d.Rule, Reason: d.Reason.String(),
			Port: portString(pr.Lo, pr.Proto), Text: text,
		}
		if !d.Expires.IsZero() {
			r.Expires = d.Expires.UTC().Format(time.RFC3339)
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "wardgate explain: service %q offers no ports\n", svcName)
		return 2
	}
	if *asJSON {
		pick := results[0]
		for _, r := range results {
			if r.Verdict == "allow" {
				pick = r
				break
			}
		}
		json.NewEncoder(stdout).Encode(pick)
		return 0
	}
	for _, r := range results {
		fmt.Fprintln(stdout, r.Text)
	}
	return 0
}

// identityHint helps with a --from that names no identity: a did-you-mean,
// or, for "group:NAME" (explain answers for one identity), some members of
// the group or a did-you-mean among groups.
func identityHint(pol *policy.Policy, from string) string {
	if g, ok := strings.CutPrefix(from, "group:"); ok {
		var members []string
		for _, id := range pol.Identities() {
			if slices.Contains(id.Groups, g) {
				members = append(members, id.Name)
			}
		}
		switch {
		case len(members) > 0:
			if len(members) > 5 {
				members = append(members[:5], "...")
			}
			return fmt.Sprintf(" (explain answers for one identity; group %s has %s)", policy.Quote(g), strings.Join(members, ", "))
		case slices.Contains(pol.Groups(), g):
			return fmt.Sprintf(" (explain answers for one identity; group %s has no members)", policy.Quote(g))
		}
		if hint := didYouMean(g, pol.Groups()); hint != "" {
			return " (unknown group" + hint + ")"
		}
		return " (no such group either)"
	}
	var names []string
	for _, id := range pol.Identities() {
		names = append(names, id.Name)
	}
	return didYouMean(from, names)
}

func didYouMean(name string, candidates []string) string {
	if c, ok := policy.Nearest(name, candidates); ok {
		return fmt.Sprintf(" (did you mean %s?)", policy.Quote(c))
	}
	return ""
}

// parseTarget parses SERVICE[:PORT[/PROTO]] and SERVICE:icmp, as [[test]]
// entries write it. A nil port list means "every port the service offers".
func parseTarget(s string) (string, []policy.PortRange, error) {
	name, rest, ok := strings.Cut(s, ":")
	if name == "" {
		return "", nil, fmt.Errorf("missing service name")
	}
	if !ok {
		return name, nil, nil
	}
	r, err := policy.ParsePortRange(rest)
	if err != nil {
		return "", nil, err
	}
	if r.Lo != r.Hi {
		return "", nil, fmt.Errorf("ask about one port, not the range %q", rest)
	}
	return name, []policy.PortRange{r}, nil
}

func portString(port uint16, proto policy.Proto) string {
	if proto == policy.ProtoICMP {
		return "icmp"
	}
	return fmt.Sprintf("%d/%s", port, proto)
}
