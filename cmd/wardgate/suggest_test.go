package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// auditRecord is a flow.audit line as the gateway writes it.
func auditRecord(id, svc string, port int, reason string) string {
	return fmt.Sprintf(`{"time":"2026-11-30T10:00:00Z","event":"flow.audit","identity":%q,"site":"leeds","dst":"100.81.0.1:%d","service":%q,"proto":"tcp","port":%d,"reason":%q}`+"\n", id, port, svc, port, reason)
}

// TestSuggestWrite: suggest proposes from an audit log of the example
// (a malformed line reported by file:line and skipped), --write writes a
// policy that `check` passes, and refuses one that would fail a test.
func TestSuggestWrite(t *testing.T) {
	dir := exampleCopy(t)
	gw, polPath := filepath.Join(dir, "gateway.toml"), filepath.Join(dir, "policy.toml")
	orig, _ := os.ReadFile(polPath)
	log := filepath.Join(dir, "audit.jsonl")
	os.WriteFile(log, []byte(
		auditRecord("ward-12-desktop", "print", 9100, "no-rule")+
			auditRecord("dr-khan-laptop", "print", 9100, "no-rule")+
			`{"time":"2026-11-30T10:00:00Z","event":"flow.audit","ident`+"\n"+
			auditRecord("admin-finance-01", "lab-results", 8080, "no-rule")+
			auditRecord("ward-12-desktop", "fileshare", 445, "deny-rule")), 0o644)

	code, out, errOut := runCLI("suggest", "-c", gw, log)
	if code != 0 {
		t.Fatalf("suggest: %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "warning: "+log+":3: not a JSON audit record") || !strings.Contains(errOut, "read 5 lines (0.0 MB) from 1 file in ") {
		t.Errorf("stderr:\n%s", errOut)
	}
	for _, w := range []string{
		"name = \"allow-lab-results\"\nfrom = [\"admin-finance-01\"]\nto = [\"lab-results\"]\nports = [\"8080/tcp\"]\n",
		"name = \"allow-print\"\nfrom = [\"group:clinical-desktop\"]\n",
		"#   group:clinical-desktop: 2 of 3 members seen, 2 flows, at 2026-11-30T10:00:00Z (not seen: york-nurse-station)\n",
		"# blocked by deny rule \"no-smb\": 1 flow",
		"# wardgate suggest: 4 denials read; 2 rules proposed for 3 flows (group threshold 0.5)\n",
		"#   held back by a deny rule, a time window or an expiry: 1 flow (listed at the end)\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	// A rotated, gzip-compressed log reads the same as the plain one.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	text, _ := os.ReadFile(log)
	zw.Write(text)
	zw.Close()
	os.WriteFile(log+".1.gz", gz.Bytes(), 0o644)
	code, outGz, errOut := runCLI("suggest", "-c", gw, log+".1.gz")
	if code != 0 || outGz != out || !strings.Contains(errOut, "warning: "+log+".1.gz:3: not a JSON audit record") {
		t.Errorf("suggest of the .gz: %d\n%s\n%s", code, errOut, outGz)
	}

	written := filepath.Join(dir, "policy.suggested.toml")
	code, _, errOut = runCLI("suggest", "-c", polPath, "--write", written, log)
	if code != 0 || !strings.Contains(errOut, "wrote "+written) {
		t.Fatalf("--write: %d\n%s", code, errOut)
	}
	if text, _ := os.ReadFile(written); !bytes.HasPrefix(text, orig) {
		t.Error("--write did not keep the policy text")
	}
	code, out, errOut = runCLI("check", "-c", written)
	if m := regexp.MustCompile(`(\d+)/(\d+) tests passed`).FindStringSubmatch(out); code != 0 || m == nil || m[1] != m[2] {
		t.Errorf("check of the written policy: %d\n%s%s", code, out, errOut)
	}

	// The example's tests say ward-12-desktop may not reach pacs:8443:
	// a proposal that allows it does not get written.
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(auditRecord("ward-12-desktop", "pacs", 8443, "no-rule"))
	f.Close()
	os.Remove(written)
	code, _, errOut = runCLI("suggest", "-c", polPath, "--write", written, log)
	at := regexp.MustCompile(`error: ` + regexp.QuoteMeta(polPath) + `:(\d+):1: test ward-12-desktop -> pacs:8443/tcp: expected deny \(no-rule\), got allow by rule "allow-pacs"`).FindStringSubmatch(errOut)
	if code != 1 || !strings.Contains(errOut, "not written: the policy with the proposals fails 1 of its tests:\n") || at == nil {
		t.Errorf("--write over a contradicting test: %d\n%s", code, errOut)
	} else if n, _ := strconv.Atoi(at[1]); n < 1 || n > len(strings.Split(string(orig), "\n")) || strings.TrimSpace(strings.Split(string(orig), "\n")[n-1]) != "[[test]]" {
		t.Errorf("the failing test is named at line %s, which is not its [[test]] line", at[1])
	}
	if _, err := os.Stat(written); err == nil {
		t.Error("a refused --write wrote the file")
	}
	if code, _, errOut = runCLI("suggest", "-c", polPath, "--group-threshold", "1.5", log); code != 2 || !strings.Contains(errOut, "at most 1") {
		t.Errorf("--group-threshold 1.5: %d %s", code, errOut)
	}
}
