// Package grant adds time-limited grants to a policy.toml and prunes the
// rules whose expiry has come, for `wardgate grant` and `grant prune`.
//
// A grant is an ordinary allow rule with `expires` and `reason`: the
// gateway stops honouring it at its expiry and ends the flows it allowed
// within a second, with no help from this package. The file is edited as
// text, as internal/enroll does it (comments and layout stay byte for
// byte): a grant is one [[rule]] block appended at the end; pruning cuts
// whole [[rule]] blocks. The edited text must load (policy.Parse, its
// [[test]]s included) before it replaces the file, atomically, and only if
// the file did not change meanwhile.
package grant

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/enroll"
	"github.com/wardgate/wardgate/policy"
)

// Request is a grant to add.
type Request struct {
	From    string             // an identity, group:NAME or site:NAME
	Service string             // the one service it reaches
	Ports   []policy.PortRange // nil: every port the service offers
	Expires time.Time          // must be after now
	Reason  string             // why: required, it goes into the audit trail's rule
	Name    string             // "" picks grant-FROM-SERVICE[-N]
}

// Added is the outcome of Add.
type Added struct {
	Rule   *policy.Rule   // as the edited policy has it
	Policy *policy.Policy // the edited policy, as written
	Block  string         // the [[rule]] text appended
}

// Add appends the grant req as a [[rule]] to the policy file at path and
// writes it atomically. It refuses, writing nothing, a grant that names
// what the policy lacks, a port the service does not offer, an expiry not
// after now, no reason, or one that would let nobody through at now (a
// deny rule wins over it: the error names the rule); an edit that does
// not load, such as a [[test]] of the file that the grant would make
// depend on the clock (policy.RunTests wants `at` there); and one that
// fails a [[test]], which the gateway would refuse to load.
func Add(path string, req Request, now time.Time) (*Added, error) {
	orig, pol, err := enroll.ReadForEdit(path)
	if err != nil {
		return nil, err
	}
	members, err := principal(pol, req.From)
	if err != nil {
		return nil, err
	}
	svc := pol.Service(req.Service)
	if svc == nil {
		return nil, fmt.Errorf("unknown service %q%s", req.Service, didYouMean(req.Service, serviceNames(pol)))
	}
	for _, r := range req.Ports {
		if !svc.Offers(r.Lo, r.Proto) || !svc.Offers(r.Hi, r.Proto) {
			return nil, fmt.Errorf("service %s does not offer %s (it offers %s)", svc.Name, r, portList(svc.Ports))
		}
	}
	switch {
	case !req.Expires.After(now):
		return nil, fmt.Errorf("the grant would expire at %s, not after now", req.Expires.Format(time.RFC3339))
	case strings.TrimSpace(req.Reason) == "":
		return nil, errors.New("a grant needs a reason (who asked, why): it stays in the policy and in the audit trail")
	}
	if rule := alreadyAllowed(pol, members, svc, req.Ports, now); rule != "" {
		return nil, fmt.Errorf("%s may already reach %s on %s by rule %q, which has no expiry or time window: the grant would change nothing; nothing written",
			req.From, svc.Name, portsOf(svc, req.Ports), rule)
	}
	if req.Name == "" {
		req.Name = freeName(pol, req.From, req.Service)
	} else if slices.ContainsFunc(pol.Rules(), func(r *policy.Rule) bool { return r.Name == req.Name }) {
		return nil, fmt.Errorf("rule %q already exists in %s", req.Name, path)
	}
	block := Block(req)
	edited := enroll.AppendBlock(orig, block)
	np, err := policy.Parse(path, edited)
	if err != nil {
		// A [[test]] without `at` that the grant bears on is refused as
		// depending on the clock. If the test fails with the grant in
		// force, that is the finding: it says this access is not wanted,
		// and giving it an `at` before the expiry would not help.
		// A deny rule that beats the grant says more than either.
		if pp := withoutExpiry(path, orig, block); pp != nil && ruleNamed(pp, req.Name) != nil {
			if err := grantsSomething(pp, members, pp.Service(req.Service), ruleNamed(pp, req.Name), now); err != nil {
				return nil, err
			}
			if failed := pp.FailedTests(); len(failed) > 0 {
				return nil, testsFail(pol, failed)
			}
		}
		return nil, fmt.Errorf("the policy with the grant would be invalid, nothing written: %w", err)
	}
	rule := ruleNamed(np, req.Name)
	if rule == nil || len(np.Rules()) != len(pol.Rules())+1 || !rule.Expires.Equal(req.Expires.UTC().Truncate(time.Second)) {
		return nil, fmt.Errorf("the edited %s does not hold exactly the new rule %q (does the file end inside a multi-line string?); nothing written", path, req.Name)
	}
	if err := grantsSomething(np, members, np.Service(req.Service), rule, now); err != nil {
		return nil, err
	}
	// A gateway refuses to start or reload a policy whose tests fail, so
	// a grant that breaks one is refused here: such a test says that this
	// access is not wanted (a test `at` a past time sees the grant too).
	if failed := np.FailedTests(); len(failed) > 0 {
		return nil, testsFail(pol, failed)
	}
	if err := enroll.WriteIfUnchanged(path, orig, edited); err != nil {
		return nil, err
	}
	return &Added{Rule: rule, Policy: np, Block: block}, nil
}

// Block renders the [[rule]] of a grant. Names are policy names (letters,
// digits, '.', '_', '-'); the reason is quoted as a TOML basic string, and
// one that needs more (a control character) is refused by policy.Parse.
// The expiry is written in UTC, to the second.
func Block(req Request) string {
	var b strings.Builder
	b.WriteString("[[rule]]\n")
	fmt.Fprintf(&b, "name = %q\n", req.Name)
	fmt.Fprintf(&b, "from = [%q]\n", req.From)
	fmt.Fprintf(&b, "to = [%q]\n", req.Service)
	if len(req.Ports) > 0 {
		ports := make([]string, len(req.Ports))
		for i, r := range req.Ports {
			ports[i] = strconv.Quote(r.String())
		}
		fmt.Fprintf(&b, "ports = [%s]\n", strings.Join(ports, ", "))
	}
	fmt.Fprintf(&b, "expires = %q\n", req.Expires.UTC().Truncate(time.Second).Format(time.RFC3339))
	fmt.Fprintf(&b, "reason = %s\n", strconv.Quote(req.Reason))
	return b.String()
}

// principal returns the identities from names; "*" is refused (a grant is
// for someone).
func principal(pol *policy.Policy, from string) ([]*policy.Identity, error) {
	var out []*policy.Identity
	switch {
	case from == "" || from == "*":
		return nil, fmt.Errorf("--from %q: a grant names an identity, group:NAME or site:NAME", from)
	case strings.HasPrefix(from, "group:"):
		g := strings.TrimPrefix(from, "group:")
		if !slices.Contains(pol.Groups(), g) {
			return nil, fmt.Errorf("unknown group %q%s", g, didYouMean(g, pol.Groups()))
		}
		for _, id := range pol.Identities() {
			if slices.Contains(id.Groups, g) {
				out = append(out, id)
			}
		}
	case strings.HasPrefix(from, "site:"):
		s := strings.TrimPrefix(from, "site:")
		if pol.Site(s) == nil {
			return nil, fmt.Errorf("unknown site %q", s)
		}
		for _, id := range pol.Identities() {
			if id.Site == s {
				out = append(out, id)
			}
		}
	default:
		id := pol.Identity(from)
		if id == nil {
			names := make([]string, 0, len(pol.Identities()))
			for _, id := range pol.Identities() {
				names = append(names, id.Name)
			}
			return nil, fmt.Errorf("unknown identity %q%s", from, didYouMean(from, names))
		}
		out = append(out, id)
	}
	return out, nil
}

// grantsSomething refuses a grant that lets none of its identities reach
// any of its ports at now: a deny rule beats it.
func grantsSomething(pol *policy.Policy, members []*policy.Identity, svc *policy.Service, rule *policy.Rule, now time.Time) error {
	ports := rule.Ports
	if len(ports) == 0 {
		ports = svc.Ports
	}
	var d policy.Decision
	for _, id := range members {
		for _, r := range ports {
			if d = pol.Decide(id, svc, r.Lo, r.Proto, now); d.Allowed() {
				return nil
			}
		}
	}
	if d.Reason == policy.ReasonDenyRule {
		return fmt.Errorf("deny rule %q forbids it: the grant would let nobody through; nothing written", d.Rule)
	}
	if len(members) == 0 {
		return fmt.Errorf("%s has no identities: the grant would let nobody through; nothing written", rule.From[0])
	}
	return fmt.Errorf("the grant would let nobody through (%s); nothing written", d.Reason)
}

// withoutExpiry is the policy with block appended as a rule that never
// expires, nil when that does not load either.
func withoutExpiry(path string, orig []byte, block string) *policy.Policy {
	var kept []string
	for _, line := range strings.SplitAfter(block, "\n") {
		if !strings.HasPrefix(line, "expires = ") {
			kept = append(kept, line)
		}
	}
	pol, err := policy.Parse(path, enroll.AppendBlock(orig, strings.Join(kept, "")))
	if err != nil {
		return nil
	}
	return pol
}

func ruleNamed(pol *policy.Policy, name string) *policy.Rule {
	for _, r := range pol.Rules() {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// testsFail is the refusal of a grant with which tests fail; tests that
// fail without it too (pol, the policy before) are named as such, not
// blamed on the grant.
func testsFail(pol *policy.Policy, failed []policy.Problem) error {
	if before := pol.FailedTests(); len(before) > 0 {
		return fmt.Errorf("the policy fails %d of its tests before the grant (see wardgate check), nothing written: %w", len(before), &policy.LoadError{Problems: before})
	}
	return fmt.Errorf("the policy with the grant fails %d of its tests, nothing written: %w", len(failed), &policy.LoadError{Problems: failed})
}

// alreadyAllowed returns the rule that lets every member reach every port
// of the grant at now and always will (no `expires`, no `when`), or "".
// Such a grant would only confuse: `grant list` would show access that
// never ends when it expires. Ranges over 1024 ports are not looked into.
func alreadyAllowed(pol *policy.Policy, members []*policy.Identity, svc *policy.Service, ports []policy.PortRange, now time.Time) string {
	if len(ports) == 0 {
		ports = svc.Ports
	}
	rule := ""
	for _, id := range members {
		for _, r := range ports {
			if r.Hi-r.Lo >= 1024 {
				return ""
			}
			for port := uint32(r.Lo); port <= uint32(r.Hi); port++ {
				d := pol.Decide(id, svc, uint16(port), r.Proto, now)
				if !d.Allowed() || !d.Expires.IsZero() {
					return ""
				}
				i := slices.IndexFunc(pol.Rules(), func(x *policy.Rule) bool { return x.Name == d.Rule })
				if i < 0 || pol.Rules()[i].When != "" {
					return ""
				}
				rule = d.Rule
			}
		}
	}
	return rule
}

func portsOf(svc *policy.Service, ports []policy.PortRange) string {
	if len(ports) == 0 {
		ports = svc.Ports
	}
	return portList(ports)
}

// freeName is grant-FROM-SERVICE, or with -2, -3, ... when taken; at most
// 64 bytes.
func freeName(pol *policy.Policy, from, svc string) string {
	base := "grant-" + strings.NewReplacer("group:", "group-", "site:", "site-").Replace(from) + "-" + svc
	if len(base) > 60 {
		base = base[:60]
	}
	taken := map[string]bool{}
	for _, r := range pol.Rules() {
		taken[r.Name] = true
	}
	name := base
	for n := 2; taken[name]; n++ {
		name = base + "-" + strconv.Itoa(n)
	}
	return name
}

// Prune removes the rules whose expiry has come at now (allow and deny:
// both decide nothing any more) and writes the file atomically. A policy
// with none is left alone (nil, nil). A [[test]] that names a removed rule
// (`rule = "..."`) is refused: nothing is written, and the error says
// where the test is.
func Prune(path string, now time.Time) ([]*policy.Rule, *policy.Policy, error) {
	orig, pol, err := enroll.ReadForEdit(path)
	if err != nil {
		return nil, nil, err
	}
	expired := pol.ExpiredRules(now)
	if len(expired) == 0 {
		return nil, pol, nil
	}
	names := make([]string, len(expired))
	for i, r := range expired {
		names[i] = r.Name
	}
	// A test that asserts a rule to be removed is named here, at its
	// line in the file as it is (the edited text's lines have moved).
	var asserting []policy.Problem
	for i, t := range pol.RunTests() {
		if t.Rule != "" && slices.Contains(names, t.Rule) {
			p := t.Problem
			p.Msg = fmt.Sprintf("test %d (%s -> %s) asserts rule %q, which has expired: change or remove its `rule`, then prune", i+1, t.From, t.To, t.Rule)
			asserting = append(asserting, p)
		}
	}
	if len(asserting) > 0 {
		return nil, nil, fmt.Errorf("nothing written: %w", &policy.LoadError{Problems: asserting})
	}
	edited, err := enroll.RemoveBlocks(orig, "rule", names)
	if err != nil {
		return nil, nil, fmt.Errorf("%w; nothing written", err)
	}
	np, err := policy.Parse(path, edited)
	if err != nil {
		return nil, nil, fmt.Errorf("the policy without the expired rules would be invalid (does a [[test]] name one?), nothing written: %w", err)
	}
	if len(np.Rules()) != len(pol.Rules())-len(expired) {
		return nil, nil, fmt.Errorf("the edited %s does not lack exactly the expired rules; nothing written", path)
	}
	if err := enroll.WriteIfUnchanged(path, orig, edited); err != nil {
		return nil, nil, err
	}
	return expired, np, nil
}

func serviceNames(pol *policy.Policy) []string {
	out := make([]string, len(pol.Services()))
	for i, s := range pol.Services() {
		out[i] = s.Name
	}
	return out
}

func didYouMean(name string, candidates []string) string {
	if c, ok := policy.Nearest(name, candidates); ok {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

func portList(rs []policy.PortRange) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return strings.Join(out, ", ")
}
