package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/internal/grant"
	"github.com/wardgate/wardgate/policy"
)

// grantNow is the clock of the grant commands; tests set it.
var grantNow = time.Now

// cmdGrant dispatches `wardgate grant` (add), `grant list` and `grant prune`.
func cmdGrant(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "list", "ls":
			return cmdGrantList(args[1:], stdout, stderr)
		case "prune":
			return cmdGrantPrune(args[1:], stdout, stderr)
		}
	}
	return cmdGrantAdd(args, stdout, stderr)
}

// cmdGrantAdd appends a time-limited allow rule to the policy (see
// internal/grant), prints it, and asks the running gateway to reload when
// -c names a gateway.toml with an admin socket.
func cmdGrantAdd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("grant", stderr)
	file := fs.String("c", "", "gateway.toml (its policy is edited and the gateway reloaded) or policy.toml")
	from := fs.String("from", "", "identity, group:NAME or site:NAME")
	to := fs.String("to", "", "SERVICE, SERVICE:PORT[/PROTO] or SERVICE:icmp")
	dur := fs.String("for", "", "how long: a Go duration (90m, 2h) or days (3d)")
	reason := fs.String("reason", "", "why, and for whom (kept in the rule)")
	name := fs.String("name", "", "rule name (default grant-FROM-SERVICE)")
	socket := fs.String("socket", "", "admin socket to ask for the reload (default: gateway.toml's [admin] socket)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || *from == "" || *to == "" || *dur == "" || len(pos) != 0 {
		fmt.Fprintln(stderr, "usage: wardgate grant -c gateway.toml --from ID|group:NAME --to SVC[:PORT[/PROTO]] --for 2h --reason \"...\"")
		return 2
	}
	d, err := parseFor(*dur)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate grant: --for: %v\n", err)
		return 2
	}
	req := grant.Request{From: *from, Reason: *reason, Name: *name}
	svc, port, hasPort := strings.Cut(*to, ":")
	req.Service = svc
	if svc == "" || hasPort && port == "" {
		fmt.Fprintf(stderr, "wardgate grant: --to %q: want SERVICE, SERVICE:PORT[/PROTO] or SERVICE:icmp\n", *to)
		return 2
	}
	if hasPort {
		r, err := policy.ParsePortRange(port)
		if err != nil {
			fmt.Fprintf(stderr, "wardgate grant: --to %q: %v\n", *to, err)
			return 2
		}
		req.Ports = []policy.PortRange{r}
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	now := grantNow()
	// The rule keeps the expiry to the second: rounded up, so that the
	// grant lasts at least as long as asked.
	req.Expires = now.Add(d)
	if t := req.Expires.Truncate(time.Second); t.Before(req.Expires) {
		req.Expires = t.Add(time.Second)
	}
	added, err := grant.Add(tgt.path, req, now)
	if err != nil {
		printRefusal(stderr, "grant", err)
		return 1
	}
	fmt.Fprint(stdout, added.Block)
	fmt.Fprintf(stderr, "granted until %s (%s from now), added to %s\n", added.Rule.Expires.Local().Format(time.RFC3339), remaining(added.Rule.Expires, now), tgt.path)
	return reloadAfterEdit(*file, *socket, tgt, added.Policy, stdout, stderr)
}

// maxGrantDays bounds --for in days, well inside what a time.Duration
// holds (about 106751 days): a grant of ten years is a rule.
const maxGrantDays = 3650

// parseFor accepts a Go duration or a whole number of days ("3d").
func parseFor(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		if err == nil && n > maxGrantDays {
			return 0, fmt.Errorf("%q: at most %dd", s, maxGrantDays)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90m, 2h or 3d", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: a grant lasts some time", s)
	}
	return d, nil
}

// reloadAfterEdit asks the gateway of gateway.toml (or --socket) to reload
// the edited policy. Without a gateway.toml, or when no gateway answers,
// it says how to apply the change instead: the edit stands either way. A
// gateway that refuses the reload (a problem outside the edit) is an
// error. Other sites' gateways need the file too.
func reloadAfterEdit(file, socket string, tgt policyTarget, pol *policy.Policy, stdout, stderr io.Writer) int {
	if len(pol.Sites()) > 1 {
		defer fmt.Fprintf(stderr, "note: copy %s to the other sites' gateways and run `wardgate reload` there too: each decides the flows it serves\n", tgt.path)
	}
	if tgt.site == "" && socket == "" {
		fmt.Fprintln(stderr, "note: run `wardgate reload` on the gateways to apply it")
		return 0
	}
	af := &adminFlags{config: &file, socket: &socket}
	sock, err := af.socketPath()
	if err != nil {
		fmt.Fprintf(stderr, "note: %v; run `wardgate reload` to apply it\n", err)
		return 0
	}
	c := newAdminClient(sock)
	status, body, err := c.do("POST", "/v1/reload")
	if err != nil {
		fmt.Fprintf(stderr, "note: %v\nthe gateway applies it when it next starts or reloads\n", err)
		return 0
	}
	var res gateway.ReloadResult
	if err := json.Unmarshal(body, &res); err != nil {
		fmt.Fprintf(stderr, "wardgate: the gateway refused to reload (%d): %s\n", status, strings.TrimSpace(string(body)))
		return 1
	}
	if status != http.StatusOK || !res.OK {
		for _, p := range res.Problems {
			fmt.Fprintf(stderr, "error: %s\n", p)
		}
		if len(res.Problems) == 0 {
			fmt.Fprintf(stderr, "error: %s\n", res.Error)
		}
		fmt.Fprintf(stderr, "wardgate: the gateway refused to reload (%d) and keeps running its previous policy; %s is edited all the same\n", status, tgt.path)
		return 1
	}
	if res.ReloadChanges != nil {
		printReload(stderr, res.ReloadChanges)
	}
	return 0
}

// cmdGrantList prints the grants in force: the allow rules with an expiry
// still to come, soonest first, with the time left.
func cmdGrantList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("grant list", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: wardgate grant list -c gateway.toml [--json]")
		return 2
	}
	_, pol, err := loadAny(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	now := grantNow()
	grants := pol.Grants(now)
	if *asJSON {
		type grantJSON struct {
			Name      string    `json:"name"`
			From      []string  `json:"from"`
			To        []string  `json:"to"`
			Ports     []string  `json:"ports,omitempty"`
			Expires   time.Time `json:"expires"`
			Remaining string    `json:"remaining"`
			Reason    string    `json:"reason,omitempty"`
		}
		out := []grantJSON{}
		for _, r := range grants {
			out = append(out, grantJSON{r.Name, r.From, r.To, portStrings(r.Ports), r.Expires, remaining(r.Expires, now), r.Reason})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return 0
	}
	if len(grants) == 0 {
		fmt.Fprintln(stdout, "no active grants")
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFROM\tTO\tPORTS\tEXPIRES\tREMAINING\tREASON")
		for _, r := range grants {
			ports := strings.Join(portStrings(r.Ports), ",")
			if ports == "" {
				ports = "all"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, strings.Join(r.From, ","), strings.Join(r.To, ","), ports,
				r.Expires.Local().Format("2006-01-02 15:04:05 MST"), remaining(r.Expires, now), r.Reason)
		}
		tw.Flush()
	}
	if n := len(pol.ExpiredRules(now)); n > 0 {
		them := "them"
		if n == 1 {
			them = "it"
		}
		fmt.Fprintf(stderr, "note: %s left, deciding nothing any more: `wardgate grant prune` removes %s\n", plural(n, "expired rule", "expired rules"), them)
	}
	return 0
}

// cmdGrantPrune removes the rules whose expiry has come, then asks the
// gateway to reload like grant does.
func cmdGrantPrune(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("grant prune", stderr)
	file := fs.String("c", "", "gateway.toml (its policy is edited and the gateway reloaded) or policy.toml")
	socket := fs.String("socket", "", "admin socket to ask for the reload (default: gateway.toml's [admin] socket)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: wardgate grant prune -c gateway.toml")
		return 2
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	removed, np, err := grant.Prune(tgt.path, grantNow())
	if err != nil {
		printRefusal(stderr, "grant prune", err)
		return 1
	}
	if len(removed) == 0 {
		fmt.Fprintf(stdout, "no expired rules in %s\n", tgt.path)
		return 0
	}
	for _, r := range removed {
		fmt.Fprintf(stdout, "removed %s (expired %s)\n", r.Name, r.Expires.Local().Format(time.RFC3339))
	}
	// The gateway decides the same without them: reloading only keeps its
	// policy hash equal to the file's.
	return reloadAfterEdit(*file, *socket, tgt, np, stdout, stderr)
}

// remaining formats how long until t: "2h", "1h59m", "3d4h", "42s".
func remaining(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 48*time.Hour:
		s := strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m") // "2h", not "2h0m"
		}
		return s
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func portStrings(rs []policy.PortRange) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}
