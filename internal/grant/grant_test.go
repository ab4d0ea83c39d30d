package grant

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

var now = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC) // a Monday

// examplePolicy copies the example policy into a temp dir.
func examplePolicy(t *testing.T) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile("../../configs/example/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func mustPorts(t *testing.T, s ...string) []policy.PortRange {
	var out []policy.PortRange
	for _, x := range s {
		r, err := policy.ParsePortRange(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestAddExpiresAndPrune: a grant is appended with its expiry and reason,
// the rest of the file kept; it allows until its expiry and not after
// (reason expired); it is listed while active; prune removes it only once
// it has expired, giving back the original file.
func TestAddExpiresAndPrune(t *testing.T) {
	path, orig := examplePolicy(t)
	req := Request{From: "it-ops-laptop", Service: "lab-results", Expires: now.Add(2 * time.Hour), Reason: "on-call cover"}
	// it-ops-laptop reaches everything already: take someone who does not.
	req.From = "admin-finance-01"
	added, err := Add(path, req, now)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(path)
	if !bytes.HasPrefix(text, orig) {
		t.Fatal("the original text (comments included) is not kept")
	}
	wantBlock := `[[rule]]
name = "grant-admin-finance-01-lab-results"
from = ["admin-finance-01"]
to = ["lab-results"]
expires = "2026-11-30T12:00:00Z"
reason = "on-call cover"
`
	if added.Block != wantBlock || !bytes.HasSuffix(text, []byte("\n\n"+wantBlock)) {
		t.Errorf("block\n%s\nfile ends\n%s", added.Block, text[len(text)-200:])
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's 0640 kept", st.Mode().Perm())
	}

	pol, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	id, svc := pol.Identity("admin-finance-01"), pol.Service("lab-results")
	for _, tc := range []struct {
		at     time.Time
		allow  bool
		reason policy.Reason
		grants int
	}{
		{now, true, policy.ReasonNone, 1},
		{now.Add(2*time.Hour - time.Second), true, policy.ReasonNone, 1},
		{now.Add(2 * time.Hour), false, policy.ReasonExpired, 0},
		{now.Add(72 * time.Hour), false, policy.ReasonExpired, 0},
	} {
		d := pol.Decide(id, svc, 8080, policy.ProtoTCP, tc.at)
		if d.Allowed() != tc.allow || d.Reason != tc.reason || d.Rule != added.Rule.Name {
			t.Errorf("at %v: %+v", tc.at, d)
		}
		if g := pol.Grants(tc.at); len(g) != tc.grants {
			t.Errorf("at %v: %d grants", tc.at, len(g))
		}
	}
	if g := pol.Grants(now); g[0].Reason != "on-call cover" || !g[0].Expires.Equal(now.Add(2*time.Hour)) {
		t.Errorf("grant %+v", g[0])
	}

	// Before expiry prune removes nothing (and does not write).
	if removed, _, err := Prune(path, now.Add(time.Hour)); err != nil || len(removed) != 0 {
		t.Fatalf("prune before expiry: %v %v", removed, err)
	}
	removed, np, err := Prune(path, now.Add(2*time.Hour))
	if err != nil || len(removed) != 1 || removed[0].Name != added.Rule.Name || len(np.Rules()) != len(pol.Rules())-1 {
		t.Fatalf("prune: %v %v", removed, err)
	}
	if text, _ := os.ReadFile(path); !bytes.Equal(text, orig) {
		t.Errorf("after prune the file is not the original:\n%s", text[len(text)-300:])
	}
}

// TestAddRefuses: what a grant may not be; nothing is written.
func TestAddRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"typo", Request{From: "ward-12-destkop", Service: "pacs"}, `unknown identity "ward-12-destkop" (did you mean "ward-12-desktop"?)`},
		{"unknown group", Request{From: "group:radiolgy", Service: "pacs"}, `unknown group "radiolgy" (did you mean "radiology"?)`},
		{"everyone", Request{From: "*", Service: "pacs"}, "a grant names an identity"},
		{"service", Request{From: "mri-3", Service: "pacss"}, `unknown service "pacss" (did you mean "pacs"?)`},
		{"port", Request{From: "mri-3", Service: "pacs", Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 22, Hi: 22}}}, "service pacs does not offer 22/tcp (it offers 8443/tcp, 11112/tcp)"},
		{"past", Request{From: "mri-3", Service: "ehr", Expires: now.Add(-time.Minute)}, "not after now"},
		{"no reason", Request{From: "mri-3", Service: "ehr", Reason: " "}, "needs a reason"},
		{"taken name", Request{From: "mri-3", Service: "ehr", Name: "no-smb"}, `rule "no-smb" already exists`},
		{"control character", Request{From: "mri-3", Service: "ehr", Reason: "a\tb"}, "control character"},
		// clinical-reads-ehr lets ward-12-desktop reach ehr for good.
		{"already allowed", Request{From: "ward-12-desktop", Service: "ehr"},
			`ward-12-desktop may already reach ehr on 8443/tcp by rule "clinical-reads-ehr", which has no expiry or time window: the grant would change nothing`},
		// The example's test "it-ops-laptop -> fileshare:445/tcp expect deny"
		// has no `at`, and no-smb beats the grant anyway: that is the answer.
		{"deny rule and a test without at", Request{From: "it-ops-laptop", Service: "fileshare", Ports: mustPorts(t, "445/tcp")}, `deny rule "no-smb" forbids it`},
		{"deny rule", Request{From: "mri-3", Service: "fileshare", Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 445, Hi: 445}}}, `deny rule "no-smb" forbids it`},
		// The example's test "ward-12-desktop -> pacs:8443/tcp expect deny"
		// has no `at`: with a grant its answer would depend on the clock,
		// and with the grant in force it fails, which is what matters.
		{"clock-dependent test", Request{From: "ward-12-desktop", Service: "pacs"},
			"fails 1 of its tests, nothing written: "},
		{"clock-dependent test names it", Request{From: "ward-12-desktop", Service: "pacs"},
			fmt.Sprintf(`policy.toml:%d:1: test ward-12-desktop -> pacs:8443/tcp: expected deny (no-rule), got allow by rule "grant-ward-12-desktop-pacs"`, exampleTestLine(t, "ward-12-desktop", "pacs:8443/tcp", ""))},
		// The example's test "dr-khan-laptop -> pacs:8443/tcp at a Saturday
		// expect deny" sees a grant made now: a gateway would refuse it.
		{"failing test", Request{From: "dr-khan-laptop", Service: "pacs", Ports: mustPorts(t, "8443/tcp")},
			fmt.Sprintf(`policy.toml:%d:1: test dr-khan-laptop -> pacs:8443/tcp: expected deny (outside-time-window), got allow by rule "grant-dr-khan-laptop-pacs"`, exampleTestLine(t, "dr-khan-laptop", "pacs:8443/tcp", "deny"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, orig := examplePolicy(t)
			if tc.req.Expires.IsZero() {
				tc.req.Expires = now.Add(time.Hour)
			}
			if tc.req.Reason == "" {
				tc.req.Reason = "test"
			}
			_, err := Add(path, tc.req, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Add: %v, want %q", err, tc.want)
			}
			if text, _ := os.ReadFile(path); !bytes.Equal(text, orig) {
				t.Error("the file changed")
			}
		})
	}
}

// TestAddToAFailingPolicy: tests that fail before the grant are named as
// such, not blamed on it.
func TestAddToAFailingPolicy(t *testing.T) {
	path, orig := examplePolicy(t)
	broken := bytes.Replace(orig, []byte("to = \"print:9100/tcp\"\nexpect = \"allow\""), []byte("to = \"print:9100/tcp\"\nexpect = \"deny\""), 1)
	os.WriteFile(path, broken, 0o640)
	_, err := Add(path, Request{From: "admin-finance-01", Service: "lab-results", Expires: now.Add(time.Hour), Reason: "x"}, now)
	if err == nil || !strings.Contains(err.Error(), "the policy fails 1 of its tests before the grant") || !strings.Contains(err.Error(), "test york-nurse-station -> print:9100/tcp: expected deny") {
		t.Errorf("Add: %v", err)
	}
	if text, _ := os.ReadFile(path); !bytes.Equal(text, broken) {
		t.Error("the file changed")
	}
}

// TestGroupGrantAndPorts: a group grant with ports; two grants of the same
// pair get distinct names; prune takes both at once and keeps the rest.
func TestGroupGrantAndPorts(t *testing.T) {
	path, orig := examplePolicy(t)
	req := Request{From: "group:medical-device", Service: "lab-results", Ports: mustPorts(t, "8080/tcp"), Expires: now.Add(time.Hour), Reason: "firmware update"}
	a, err := Add(path, req, now)
	if err != nil {
		t.Fatal(err)
	}
	req.Expires = now.Add(3 * time.Hour)
	b, err := Add(path, req, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.Rule.Name != "grant-group-medical-device-lab-results" || b.Rule.Name != a.Rule.Name+"-2" {
		t.Errorf("names %q %q", a.Rule.Name, b.Rule.Name)
	}
	if !strings.Contains(b.Block, "ports = [\"8080/tcp\"]\n") {
		t.Errorf("block %s", b.Block)
	}
	if g := b.Policy.Grants(now); len(g) != 2 || g[0].Name != a.Rule.Name {
		t.Errorf("grants, soonest first: %v", g)
	}
	removed, _, err := Prune(path, now.Add(4*time.Hour))
	if err != nil || len(removed) != 2 {
		t.Fatalf("prune: %v %v", removed, err)
	}
	if text, _ := os.ReadFile(path); !bytes.Equal(text, orig) {
		t.Error("after prune the file is not the original")
	}
}

// TestPruneRefusesWhenATestNamesTheRule: the file is left as it was.
func TestPruneRefusesWhenATestNamesTheRule(t *testing.T) {
	path, _ := examplePolicy(t)
	if _, err := Add(path, Request{From: "mri-3", Service: "lab-results", Expires: now.Add(time.Hour), Reason: "x", Name: "mri-lab"}, now); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\n[[test]]\nfrom = \"mri-3\"\nto = \"lab-results:8080/tcp\"\nat = \"2026-11-30T10:30:00Z\"\nexpect = \"allow\"\nrule = \"mri-lab\"\n")
	f.Close()
	before, _ := os.ReadFile(path)
	// The error names the test's line in the file as it is, not in the
	// edited text, where the removed rule's lines are gone.
	line := bytes.Count(before[:bytes.LastIndex(before, []byte("[[test]]"))], []byte("\n")) + 1
	_, _, err := Prune(path, now.Add(2*time.Hour))
	at := fmt.Sprintf("%s:%d:1: test ", path, line)
	want := `(mri-3 -> lab-results:8080/tcp) asserts rule "mri-lab", which has expired`
	if err == nil || !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), want) {
		t.Errorf("prune: %v\nwant %s... %s", err, at, want)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Error("the file changed")
	}
}

// exampleTestLine is the line of the example policy's [[test]] from from
// to to (expecting expect, when given): where an error about it points.
func exampleTestLine(t *testing.T, from, to, expect string) int {
	t.Helper()
	data, err := os.ReadFile("../../configs/example/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "[[test]]" {
			continue
		}
		block := strings.Join(lines[i:min(i+6, len(lines))], "\n")
		if strings.Contains(block, `from = "`+from+`"`) && strings.Contains(block, `to = "`+to+`"`) &&
			(expect == "" || strings.Contains(block, `expect = "`+expect+`"`)) {
			return i + 1
		}
	}
	t.Fatalf("the example policy has no [[test]] from %s to %s", from, to)
	return 0
}
