package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiffCommand(t *testing.T) {
	text, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	changed := filepath.Join(dir, "new.toml")
	// radiology reads pacs at weekends too.
	os.WriteFile(changed, bytes.Replace(text, []byte("when = \"mon-fri 07:00-20:00 Europe/London\"\n"), nil, 1), 0o644)

	code, out, errs := runCLI("diff", examplePolicy, examplePolicy)
	if code != 0 || !strings.Contains(out, "no access gained or lost") {
		t.Errorf("diff of a file with itself: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI("diff", "--at", "2026-03-02T09:30:00Z", examplePolicy, changed)
	if code != 0 || !strings.Contains(out, "no access gained or lost") {
		t.Errorf("diff on a Monday morning: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI("diff", "--at", "2026-03-07T15:00:00Z", "--json", examplePolicy, changed)
	var got []struct {
		Identity, Service, Ports, Rule, Reason string
		Gained                                 bool
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("diff --json: exit %d, %v\n%s%s", code, err, out, errs)
	}
	found := false
	for _, c := range got {
		if !c.Gained || c.Service != "pacs" || c.Rule != "radiology-reads-pacs" || c.Reason != "outside-time-window" {
			t.Errorf("unexpected change: %+v", c)
		}
		if c.Identity == "dr-khan-laptop" && c.Ports == "8443/tcp" {
			found = true
		}
	}
	if !found {
		t.Errorf("dr-khan-laptop's pacs:8443/tcp on a Saturday is not among the gains: %+v", got)
	}
	code, out, _ = runCLI("diff", "--at", "2026-03-07T15:00:00Z", examplePolicy, changed)
	if code != 0 || !strings.Contains(out, "+ dr-khan-laptop") || !strings.Contains(out, "granted by rule radiology-reads-pacs") {
		t.Errorf("diff text: %s", out)
	}
	code, out, _ = runCLI("diff", "--at", "2026-03-07T15:00:00Z", changed, examplePolicy)
	if code != 0 || !strings.Contains(out, "- dr-khan-laptop") || !strings.Contains(out, "was rule radiology-reads-pacs, now outside-time-window") {
		t.Errorf("diff text the other way: %s", out)
	}
	if code, _, errs := runCLI("diff", examplePolicy); code != 2 || !strings.Contains(errs, "OLD NEW") {
		t.Errorf("diff with one file: exit %d %s", code, errs)
	}
}
