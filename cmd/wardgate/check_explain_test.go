package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const examplePolicy = "../../configs/example/policy.toml"

func TestCheckExample(t *testing.T) {
	for _, f := range []string{examplePolicy, "../../configs/example/gateway.toml"} {
		code, out, errs := runCLI("check", "-c", f)
		if code != 0 || !strings.Contains(out, "tests passed") {
			t.Errorf("check %s: exit %d\n%s%s", f, code, out, errs)
		}
	}
}

func TestCheckBrokenNamesFileAndLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "policy.toml")
	text, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bad, bytes.Replace(text, []byte(`"group:radiology"`), []byte(`"group:radiolgy"`), 1), 0o644)
	code, _, errs := runCLI("check", "-c", bad)
	if code != 1 || !strings.Contains(errs, bad+":") || !strings.Contains(errs, `unknown group "radiolgy"`) {
		t.Fatalf("check of a broken policy: exit %d\n%s", code, errs)
	}
}

// TestCheckFailingTest: a failing [[test]] is one line, with its place,
// what it expected and what it got, said once.
func TestCheckFailingTest(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "policy.toml")
	text, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	// The test of york-nurse-station -> print now expects deny.
	text = bytes.Replace(text, []byte("to = \"print:9100/tcp\"\nexpect = \"allow\""), []byte("to = \"print:9100/tcp\"\nexpect = \"deny\""), 1)
	os.WriteFile(bad, text, 0o644)
	code, _, errs := runCLI("check", "-c", bad)
	want := `: test york-nurse-station -> print:9100/tcp: expected deny, got allow by rule "york-prints"` + "\n"
	if code != 1 || !strings.HasPrefix(errs, "FAIL: "+bad+":") || !strings.HasSuffix(errs, want) || strings.Count(errs, "expected") != 1 {
		t.Errorf("check: exit %d\n%s\nwant FAIL: %s:LINE:COL%s", code, errs, bad, want)
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		to, at, verdict, rule, reason string
	}{
		{"pacs:8443/tcp", "2026-03-02T09:30:00Z", "allow", "radiology-reads-pacs", ""},
		{"pacs:8443", "2026-03-07T15:00:00Z", "deny", "radiology-reads-pacs", "outside-time-window"},
		{"pacs:9999/tcp", "2026-03-02T09:30:00Z", "deny", "", "no-service"},
	} {
		code, out, errs := runCLI("explain", "-c", examplePolicy, "--from", "dr-khan-laptop", "--to", tc.to, "--at", tc.at, "--json")
		if code != 0 {
			t.Fatalf("explain %s: exit %d: %s", tc.to, code, errs)
		}
		var got struct{ Verdict, Rule, Reason string }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("explain --json: %v: %q", err, out)
		}
		if got.Verdict != tc.verdict || got.Rule != tc.rule || got.Reason != tc.reason {
			t.Errorf("explain %s at %s = %+v, want %s %q %q", tc.to, tc.at, got, tc.verdict, tc.rule, tc.reason)
		}
	}
	for _, tc := range []struct{ from, to, want string }{
		{"dr-khan-laptp", "pacs:8443", `unknown identity "dr-khan-laptp" in ` + examplePolicy + ` (did you mean "dr-khan-laptop"?)`},
		{"dr-khan-laptop", "psacs:8443", `unknown service "psacs" in ` + examplePolicy + ` (did you mean "pacs"?)`},
		{"group:radiology", "pacs:8443", `(explain answers for one identity; group "radiology" has dr-khan-laptop`},
		{"group:radiolgy", "pacs:8443", `(unknown group (did you mean "radiology"?))`},
	} {
		code, _, errs := runCLI("explain", "-c", examplePolicy, "--from", tc.from, "--to", tc.to)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("explain --from %s --to %s: exit %d, %q; want %q", tc.from, tc.to, code, errs, tc.want)
		}
	}
	for _, args := range [][]string{
		{"--from", "nobody", "--to", "pacs:8443"},
		{"--from", "dr-khan-laptop", "--to", "no-such-service"},
		{"--from", "dr-khan-laptop", "--to", "pacs:0"},
		{"--from", "dr-khan-laptop", "--to", "pacs:8443", "--at", "monday"},
	} {
		if code, _, _ := runCLI(append([]string{"explain", "-c", examplePolicy}, args...)...); code != 2 {
			t.Errorf("explain %v: exit %d, want 2", args, code)
		}
	}
}

// TestExplainExpiry: a time-limited rule shows when the allow ends, in the
// sentence and as --json "expires"; after it, the denial says expired.
func TestExplainExpiry(t *testing.T) {
	text, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(t.TempDir(), "policy.toml")
	extra := "\n[[rule]]\nname = \"khan-weekend-cover\"\nfrom = [\"dr-khan-laptop\"]\nto = [\"pacs\"]\nports = [\"11112/tcp\"]\nexpires = \"2026-03-09T00:00:00Z\"\nreason = \"weekend cover\"\n"
	if err := os.WriteFile(pol, append(text, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at, verdict, rule, reason, expires string
	}{
		{"2026-03-07T15:00:00Z", "allow", "khan-weekend-cover", "", "2026-03-09T00:00:00Z"},
		{"2026-03-14T15:00:00Z", "deny", "khan-weekend-cover", "expired", "2026-03-09T00:00:00Z"},
	} {
		code, out, errs := runCLI("explain", "-c", pol, "--from", "dr-khan-laptop", "--to", "pacs:11112", "--at", tc.at, "--json")
		if code != 0 {
			t.Fatalf("explain at %s: exit %d: %s", tc.at, code, errs)
		}
		var got struct{ Verdict, Rule, Reason, Expires, Explanation string }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("explain --json: %v: %q", err, out)
		}
		if got.Verdict != tc.verdict || got.Rule != tc.rule || got.Reason != tc.reason || got.Expires != tc.expires {
			t.Errorf("explain at %s = %+v, want %s %q %q %q", tc.at, got, tc.verdict, tc.rule, tc.reason, tc.expires)
		}
	}
	_, out, _ := runCLI("explain", "-c", pol, "--from", "dr-khan-laptop", "--to", "pacs:11112", "--at", "2026-03-07T15:00:00Z")
	if !strings.Contains(out, "allowed until 2026-03-09T00:00:00Z (reason: weekend cover)") {
		t.Errorf("explain text: %q", out)
	}
	code, _, errs := runCLI("check", "-c", pol)
	if code != 0 || !strings.Contains(errs, `warning: `+pol+`:`) || !strings.Contains(errs, `rule "khan-weekend-cover": expired at 2026-03-09T00:00:00Z: it grants nothing now; remove it`) {
		t.Errorf("check of an expired rule: exit %d (want 0 and a warning)\n%s", code, errs)
	}
}

// TestCheckWarnsOfAKeyThatIsNotTheSites: a private key whose public half is
// not the site's key in the policy is a warning for check (run refuses it).
func TestCheckWarnsOfAKeyThatIsNotTheSites(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"gateway.toml", "policy.toml"} {
		text, err := os.ReadFile(filepath.Join("../../configs/example", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), text, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "keys"), 0o700)
	// The york key where leeds's should be: valid, but another site's.
	york, err := os.ReadFile("../../configs/example/keys/york.key")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "keys", "leeds.key"), york, 0o600)
	code, out, errs := runCLI("check", "-c", filepath.Join(dir, "gateway.toml"))
	if code != 0 || !strings.Contains(errs, `but site "leeds" has key`) || !strings.Contains(out, "; 1 warning;") {
		t.Fatalf("check with another site's key: exit %d\n%s%s", code, out, errs)
	}
}
