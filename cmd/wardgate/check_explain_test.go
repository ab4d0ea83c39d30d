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
