package suggest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

const testPolicy = "testdata/policy.toml"

// monday10 is inside clinical-ehr's window (mon-fri 07:00-20:00 UTC).
var monday10 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func loadPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Load(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// auditLine is one record as the gateway writes it (gateway/flowaudit.go).
func auditLine(event, id, svc, proto string, port int, reason string, at time.Time) string {
	return fmt.Sprintf(`{"time":%q,"event":%q,"flow":"f1","identity":%q,"site":"leeds","src":"100.80.1.10:40000","dst":"100.81.0.10:%d","service":%q,"proto":%q,"port":%d,"community_id":"1:x","reason":%q}`,
		at.Format(time.RFC3339Nano), event, id, port, svc, proto, port, reason)
}

// flows returns n audit lines of id reaching svc:port/proto, a minute apart.
func flows(n int, event, id, svc string, port int, reason string, at time.Time) []string {
	var out []string
	for i := range n {
		out = append(out, auditLine(event, id, svc, "tcp", port, reason, at.Add(time.Duration(i)*time.Minute)))
	}
	return out
}

// week is the crafted audit log most tests read.
func week() []string {
	var l []string
	add := func(s ...string) { l = append(l, s...) }
	// Three of radiology's four members reach pacs:443 (audit mode): the
	// group stands for them. desk-1 alone of clinical's three stays a name.
	add(flows(5, "flow.audit", "rad-1", "pacs", 443, "no-rule", monday10)...)
	add(flows(3, "flow.audit", "rad-2", "pacs", 443, "no-rule", monday10)...)
	add(flows(2, "flow.deny", "rad-3", "pacs", 443, "no-rule", monday10)...)
	add(flows(1, "flow.audit", "desk-1", "pacs", 443, "no-rule", monday10.Add(time.Hour))...)
	// Only rad-1 uses 104: a rule of its own.
	add(flows(4, "flow.audit", "rad-1", "pacs", 104, "no-rule", monday10)...)
	// Every identity of york reaches files: site:york; desk-1 too.
	add(flows(2, "flow.audit", "york-1", "files", 445, "no-rule", monday10)...)
	add(flows(2, "flow.audit", "york-2", "files", 445, "no-rule", monday10)...)
	add(flows(1, "flow.audit", "desk-1", "files", 445, "no-rule", monday10)...)
	// A deny rule forbids radiology the file shares: held back, even
	// though the log says no-rule (it predates the deny rule).
	add(flows(3, "flow.audit", "rad-1", "files", 445, "no-rule", monday10)...)
	add(flows(1, "flow.audit", "rad-2", "files", 445, "deny-rule", monday10)...)
	// desk-2 reaches ehr at night: outside clinical-ehr's window.
	add(flows(2, "flow.audit", "desk-2", "ehr", 8443, "no-rule", monday10.Add(12*time.Hour))...)
	// Allowed by the policy now (by day); an identity the policy lacks.
	add(flows(2, "flow.audit", "desk-3", "ehr", 8443, "no-rule", monday10)...)
	add(flows(1, "flow.audit", "ghost", "pacs", 443, "no-rule", monday10)...)
	// What suggest does not read: allows, ends, DNS, a cap refusal.
	add(auditLine("flow.allow", "york-1", "print", "tcp", 9100, "", monday10))
	add(`{"time":"2026-11-30T10:00:00Z","event":"flow.end","flow":"f1","bytes_in":10}`)
	add(`{"time":"2026-11-30T10:00:00Z","event":"dns.query","name":"pacs.test.internal"}`)
	add(auditLine("flow.deny", "desk-3", "pacs", "tcp", 443, "flow-cap", monday10))
	return l
}

func readLines(t *testing.T, pol *policy.Policy, opts Options, lines []string) (*Result, []string) {
	t.Helper()
	c := New(pol, opts)
	var bad []string
	_, err := ReadAudit(strings.NewReader(strings.Join(lines, "\n")+"\n"), "audit.jsonl", c.Add, func(e *LineError) { bad = append(bad, e.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	return c.Result(), bad
}

type rule struct{ name, from, ports string }

func rules(res *Result) []rule {
	var out []rule
	for _, p := range res.Proposals {
		var from, ports []string
		for _, pr := range p.From {
			from = append(from, pr.Name)
		}
		for _, r := range p.Ports {
			ports = append(ports, r.String())
		}
		out = append(out, rule{p.Name, strings.Join(from, " "), p.Service + ":" + strings.Join(ports, ",")})
	}
	return out
}

func TestGeneralisation(t *testing.T) {
	pol := loadPolicy(t)
	for _, tc := range []struct {
		name      string
		threshold float64
		want      []rule
	}{
		{"default threshold: 3 of 4 radiology members make the group", 0, []rule{
			{"allow-files", "site:york desk-1", "files:445/tcp"},
			{"allow-pacs", "rad-1", "pacs:104/tcp"},
			{"allow-pacs-2", "group:radiology desk-1", "pacs:443/tcp"},
		}},
		{"threshold 0.8: 3 of 4 is not enough", 0.8, []rule{
			{"allow-files", "site:york desk-1", "files:445/tcp"},
			{"allow-pacs", "rad-1", "pacs:104/tcp"},
			{"allow-pacs-2", "desk-1 rad-1 rad-2 rad-3", "pacs:443/tcp"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, bad := readLines(t, pol, Options{GroupThreshold: tc.threshold}, week())
			if len(bad) > 0 {
				t.Fatalf("malformed: %v", bad)
			}
			if got := rules(res); !slices.Equal(got, tc.want) {
				t.Errorf("proposals\n got %v\nwant %v", got, tc.want)
			}
		})
	}
	res, _ := readLines(t, pol, Options{}, week())
	if want := (Counts{Observed: 29, Proposed: 20, Held: 6, Allowed: 2, Unknown: 1}); res.Counts != want {
		t.Errorf("counts %+v, want %+v", res.Counts, want)
	}
	g := res.Proposals[2].From[0]
	if g.Name != "group:radiology" || g.Members != 4 || !slices.Equal(g.Seen, []string{"rad-1", "rad-2", "rad-3"}) ||
		!slices.Equal(g.Unseen, []string{"rad-4"}) || g.Tally.Flows != 10 {
		t.Errorf("group evidence %+v", g)
	}
	if p := res.Proposals[2]; p.TestFrom != "rad-1" || p.TestTo != "pacs:443/tcp" || p.Tally.Flows != 11 ||
		!p.Tally.First.Equal(monday10) || !p.Tally.Last.Equal(monday10.Add(time.Hour)) {
		t.Errorf("proposal %+v", p)
	}
}

// TestHeldBack: what a deny rule forbids is never proposed, whatever
// reason the log gave; it is listed with the rule, as are flows outside a
// rule's time window.
func TestHeldBack(t *testing.T) {
	res, _ := readLines(t, loadPolicy(t), Options{}, week())
	for _, p := range res.Proposals {
		for _, pr := range p.From {
			if p.Service == "files" && (pr.Name == "group:radiology" || slices.Contains(pr.Seen, "rad-1")) {
				t.Errorf("proposal %s grants radiology the file shares: %+v", p.Name, pr)
			}
		}
	}
	if len(res.Held) != 2 {
		t.Fatalf("held %+v", res.Held)
	}
	deny, window := res.Held[0], res.Held[1]
	if deny.Reason != policy.ReasonDenyRule || deny.Rule != "no-files-for-radiology" || deny.Tally.Flows != 4 ||
		len(deny.Flows) != 2 || deny.Flows[0].Identity != "rad-1" || deny.Flows[0].Tally.Flows != 3 {
		t.Errorf("deny-rule held %+v", deny)
	}
	if window.Reason != policy.ReasonOutsideTimeWindow || window.Rule != "clinical-ehr" || window.Tally.Flows != 2 {
		t.Errorf("window held %+v", window)
	}
	var out bytes.Buffer
	res.WriteTOML(&out)
	for _, want := range []string{
		`# blocked by deny rule "no-files-for-radiology": 4 flows, 2026-11-30T10:00:00Z to 2026-11-30T10:02:00Z`,
		"#   rad-1 -> files:445/tcp: 3 flows",
		`# outside the time window of rule "clinical-ehr": 2 flows`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestExpiredGrantPruned: flows denied after a grant expired are held
// back under that rule even once `grant prune` has removed it from the
// policy, where deciding them again says only no-rule: proposing them
// would make the grant permanent.
func TestExpiredGrantPruned(t *testing.T) {
	line := strings.Replace(auditLine("flow.deny", "desk-1", "pacs", "tcp", 443, "expired", monday10),
		`"reason"`, `"rule":"grant-desk-1-pacs","reason"`, 1)
	res, _ := readLines(t, loadPolicy(t), Options{}, []string{line})
	if len(res.Proposals) != 0 || len(res.Held) != 1 || res.Held[0].Reason != policy.ReasonExpired || res.Held[0].Rule != "grant-desk-1-pacs" {
		t.Fatalf("proposals %+v, held %+v", res.Proposals, res.Held)
	}
	var out bytes.Buffer
	res.WriteTOML(&out)
	if want := `# after rule "grant-desk-1-pacs" expired: 1 flow`; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// TestDeterministic: the same records in any order, split over any
// number of files, give the same bytes.
func TestDeterministic(t *testing.T) {
	pol := loadPolicy(t)
	lines := week()
	var first []byte
	for i := range 20 {
		shuffled := slices.Clone(lines)
		rand.New(rand.NewPCG(uint64(i), 1)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		c := New(pol, Options{})
		cut := i % len(shuffled)
		for _, part := range [][]string{shuffled[:cut], shuffled[cut:]} {
			if _, err := ReadAudit(strings.NewReader(strings.Join(part, "\n")), "part", c.Add, func(e *LineError) { t.Error(e) }); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		c.Result().WriteTOML(&out)
		if i == 0 {
			first = out.Bytes()
			t.Logf("output:\n%s", first)
			continue
		}
		if !bytes.Equal(first, out.Bytes()) {
			t.Fatalf("order %d gave different output:\n%s\nfirst:\n%s", i, out.Bytes(), first)
		}
	}
}

// TestMalformedLines: a bad line is reported with its file and line
// number and skipped; the lines after it still count.
func TestMalformedLines(t *testing.T) {
	lines := week()
	lines = slices.Insert(lines, 4,
		`{"time":"2026-11-30T10:00:00Z","event":"flow.audit","identity":"rad-4","serv`, // cut short by a crash
		``, // blank lines are not errors
		`{"event":"flow.audit","identity":"rad-4","service":"pacs","proto":"tcp","port":443,"reason":"no-rule"}`,
		`{"time":"2026-11-30T10:00:00Z","event":"flow.audit","identity":"rad-4","service":"pacs","proto":"sctp","port":443,"reason":"no-rule"}`,
		`garbage`,
		"{\"time\":\"2026-11-30T10:00:00Z\",\"event\":\"flow.end\",\"pad\":\""+strings.Repeat("x", maxLine)+"\"}",
	)
	res, bad := readLines(t, loadPolicy(t), Options{}, lines)
	want := []string{
		"audit.jsonl:5: not a JSON audit record",
		"audit.jsonl:7: flow.audit record without a time",
		`audit.jsonl:8: flow.audit record with proto "sctp"`,
		`audit.jsonl:9: not a JSON object: "garbage"`,
		"audit.jsonl:10: line longer than 65536 bytes",
	}
	if len(bad) != len(want) {
		t.Fatalf("reported %d lines, want %d:\n%s", len(bad), len(want), strings.Join(bad, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(bad[i], want[i]) {
			t.Errorf("report %d: %q, want it to start %q", i, bad[i], want[i])
		}
	}
	if res.Counts.Observed != 29 {
		t.Errorf("observed %d after skipping the bad lines, want 29", res.Counts.Observed)
	}
}

// TestApplyPassesCheck: the policy with the proposals appended keeps its
// text, loads, passes every [[test]] (the new ones included) and allows
// what was seen, and what the generalisation adds.
func TestApplyPassesCheck(t *testing.T) {
	pol := loadPolicy(t)
	orig, err := os.ReadFile(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := readLines(t, pol, Options{}, week())
	text, np, err := res.Apply(testPolicy, orig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(text, orig) {
		t.Error("the original text is not kept")
	}
	if n := len(np.RunTests()); n != len(res.Proposals) {
		t.Errorf("%d tests, want one per proposal (%d)", n, len(res.Proposals))
	}
	for _, tc := range []struct {
		id, svc string
		port    uint16
		want    bool
	}{
		{"rad-4", "pacs", 443, true}, // through group:radiology, unseen
		{"rad-4", "pacs", 104, false},
		{"york-2", "files", 445, true},
		{"rad-1", "files", 445, false}, // the deny rule still wins
		{"desk-2", "pacs", 443, false},
	} {
		d := np.Decide(np.Identity(tc.id), np.Service(tc.svc), tc.port, policy.ProtoTCP, monday10)
		if d.Allowed() != tc.want {
			t.Errorf("%s -> %s:%d: %v, want allowed=%v", tc.id, tc.svc, tc.port, d, tc.want)
		}
	}
	// Suggesting again on the new policy proposes nothing.
	again, _ := readLines(t, np, Options{}, week())
	if len(again.Proposals) != 0 || again.Counts.Allowed != 22 {
		t.Errorf("second pass: %v, counts %+v", rules(again), again.Counts)
	}
	// A proposal that breaks a test of the file is refused.
	broken := append(bytes.Clone(orig), "\n[[test]]\nfrom = \"rad-4\"\nto = \"pacs:443/tcp\"\nexpect = \"deny\"\n"...)
	if _, _, err := res.Apply(testPolicy, broken); err == nil || !strings.Contains(err.Error(), "the policy with the proposals fails 1 of its tests") {
		t.Errorf("Apply over a contradicting test: %v", err)
	}
	// A test that fails already, and with the proposals too, is not
	// blamed on them; one that they make pass is no reason to refuse.
	failing := append(bytes.Clone(orig), "\n[[test]]\nfrom = \"desk-2\"\nto = \"pacs:443/tcp\"\nexpect = \"allow\"\n"...)
	if _, _, err := res.Apply(testPolicy, failing); err == nil || !strings.Contains(err.Error(), "the policy fails 1 of its tests before the proposals") {
		t.Errorf("Apply over a failing test: %v", err)
	}
	fixed := append(bytes.Clone(orig), "\n[[test]]\nfrom = \"rad-4\"\nto = \"pacs:443/tcp\"\nat = \"2026-11-30T10:00:00Z\"\nexpect = \"allow\"\n"...)
	if _, _, err := res.Apply(testPolicy, fixed); err != nil {
		t.Errorf("Apply over a test the proposals make pass: %v", err)
	}
}

// TestSuggestObservations: the in-memory entry point (the console's) gives
// what the audit reader does.
func TestSuggestObservations(t *testing.T) {
	pol := loadPolicy(t)
	var obs []Observation
	if _, err := ReadAudit(strings.NewReader(strings.Join(week(), "\n")), "a", func(o Observation) { obs = append(obs, o) }, func(*LineError) {}); err != nil {
		t.Fatal(err)
	}
	res := Suggest(pol, obs, Options{})
	viaReader, _ := readLines(t, pol, Options{}, week())
	if !slices.Equal(rules(res), rules(viaReader)) || res.Counts != viaReader.Counts {
		t.Errorf("Suggest %v, ReadAudit %v", rules(res), rules(viaReader))
	}
}

// TestSummaryWithNothingHeld: the summary points at a list only when
// there is one.
func TestSummaryWithNothingHeld(t *testing.T) {
	res, _ := readLines(t, loadPolicy(t), Options{}, flows(2, "flow.audit", "rad-1", "pacs", 104, "no-rule", monday10))
	var out bytes.Buffer
	res.WriteTOML(&out)
	if want := "#   held back by a deny rule, a time window or an expiry: 0 flows\n"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}
