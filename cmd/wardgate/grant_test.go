package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// setGrantClock fixes grant's clock for one test.
func setGrantClock(t *testing.T, at time.Time) {
	t.Helper()
	saved := grantNow
	grantNow = func() time.Time { return at }
	t.Cleanup(func() { grantNow = saved })
}

// TestGrantAddListPrune: grant appends the rule (comments kept), prints
// it and reloads the gateway over the admin socket; list shows it with
// the time left; once expired, check warns about it, list points at
// prune, and prune gives back the original file.
func TestGrantAddListPrune(t *testing.T) {
	dir := exampleCopy(t)
	gw, polPath := filepath.Join(dir, "gateway.toml"), filepath.Join(dir, "policy.toml")
	orig, _ := os.ReadFile(polPath)
	sock := serveFake(t, &fakeGateway{reloadOK: true})
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	setGrantClock(t, start)

	code, out, errOut := runCLI("grant", "-c", gw, "--from", "admin-finance-01", "--to", "lab-results:8080/tcp",
		"--for", "2h", "--reason", "year-end audit", "--socket", sock)
	if code != 0 {
		t.Fatalf("grant: %d\n%s", code, errOut)
	}
	expires := start.Add(2 * time.Hour).UTC().Format(time.RFC3339)
	want := "[[rule]]\nname = \"grant-admin-finance-01-lab-results\"\nfrom = [\"admin-finance-01\"]\nto = [\"lab-results\"]\nports = [\"8080/tcp\"]\nexpires = \"" + expires + "\"\nreason = \"year-end audit\"\n"
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
	for _, w := range []string{"granted until ", "(2h from now)", "reloaded: policy feedfacefeedface", "copy " + polPath + " to the other sites' gateways"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("grant's messages lack %q:\n%s", w, errOut)
		}
	}
	text, _ := os.ReadFile(polPath)
	if !bytes.HasPrefix(text, orig) || !bytes.HasSuffix(text, []byte(want)) {
		t.Error("the policy is not the original plus the rule")
	}

	setGrantClock(t, start.Add(time.Minute))
	code, out, _ = runCLI("grant", "list", "-c", gw)
	if code != 0 || !regexpLine(out, `grant-admin-finance-01-lab-results\s+admin-finance-01\s+lab-results\s+8080/tcp\s+.*\s+1h59m\s+year-end audit`) {
		t.Errorf("grant list: %d\n%s", code, out)
	}
	code, out, _ = runCLI("grant", "list", "-c", gw, "--json")
	if code != 0 || !strings.Contains(out, `"remaining": "1h59m"`) || !strings.Contains(out, `"expires": "`+expires+`"`) {
		t.Errorf("grant list --json: %d\n%s", code, out)
	}

	// Now (the real clock) the grant has expired an hour ago.
	setGrantClock(t, time.Now())
	code, _, errOut = runCLI("check", "-c", polPath)
	if code != 0 || !strings.Contains(errOut, `rule "grant-admin-finance-01-lab-results": expired at `+expires+": it grants nothing now; remove it") {
		t.Errorf("check: %d\n%s", code, errOut)
	}
	code, out, errOut = runCLI("grant", "list", "-c", gw)
	if code != 0 || out != "no active grants\n" || !strings.Contains(errOut, "1 expired rule left, deciding nothing any more: `wardgate grant prune` removes it") {
		t.Errorf("grant list after expiry: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI("grant", "prune", "-c", gw, "--socket", sock)
	if code != 0 || !strings.HasPrefix(out, "removed grant-admin-finance-01-lab-results (expired ") || !strings.Contains(errOut, "reloaded: policy") {
		t.Errorf("prune: %d %q %q", code, out, errOut)
	}
	if text, _ := os.ReadFile(polPath); !bytes.Equal(text, orig) {
		t.Error("after prune the policy is not the original")
	}
	if code, out, _ = runCLI("grant", "prune", "-c", gw, "--socket", sock); code != 0 || !strings.HasPrefix(out, "no expired rules") {
		t.Errorf("second prune: %d %q", code, out)
	}
}

// TestGrantReload: without a running gateway the grant stands and grant
// says how it will apply; a gateway that refuses the reload is an error.
func TestGrantReload(t *testing.T) {
	dir := exampleCopy(t)
	gw := filepath.Join(dir, "gateway.toml")
	args := []string{"grant", "-c", gw, "--from", "group:medical-device", "--to", "lab-results", "--for", "1d", "--reason", "firmware"}

	code, _, errOut := runCLI(append(args, "--socket", filepath.Join(dir, "nobody.sock"))...)
	if code != 0 || !strings.Contains(errOut, "cannot reach the gateway's admin socket") || !strings.Contains(errOut, "applies it when it next starts or reloads") {
		t.Errorf("no gateway: %d\n%s", code, errOut)
	}
	sock := serveFake(t, &fakeGateway{reloadOK: false})
	code, out, errOut := runCLI(append(args, "--socket", sock)...)
	if code != 1 || !strings.Contains(out, `name = "grant-group-medical-device-lab-results-2"`) ||
		!strings.Contains(errOut, "the gateway refused to reload (422) and keeps running its previous policy") ||
		!strings.Contains(errOut, `error: policy.toml:41:1: rule "x": unknown group "radiolgy"`) || strings.Contains(errOut, `"ok"`) {
		t.Errorf("refused reload: %d\n%s\n%s", code, out, errOut)
	}
	// A policy.toml: nothing to reload, the note says what to do.
	code, _, errOut = runCLI("grant", "-c", filepath.Join(dir, "policy.toml"), "--from", "mri-3", "--to", "lab-results", "--for", "90m", "--reason", "x")
	if code != 0 || !strings.Contains(errOut, "run `wardgate reload` on the gateways") {
		t.Errorf("policy.toml: %d\n%s", code, errOut)
	}
}

// TestGrantRoundsExpiryUp: the expiry is kept to the second, rounded up,
// so that a grant lasts at least as long as asked and says so.
func TestGrantRoundsExpiryUp(t *testing.T) {
	dir := exampleCopy(t)
	polPath := filepath.Join(dir, "policy.toml")
	setGrantClock(t, time.Date(2026, 11, 30, 10, 0, 0, 500_000_000, time.UTC))
	code, out, errOut := runCLI("grant", "-c", polPath, "--from", "mri-3", "--to", "lab-results", "--for", "2h", "--reason", "x")
	if code != 0 || !strings.Contains(out, `expires = "2026-11-30T12:00:01Z"`) || !strings.Contains(errOut, "(2h from now)") {
		t.Errorf("grant: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("grant", "list", "-c", polPath)
	if code != 0 || !strings.Contains(out, time.Date(2026, 11, 30, 12, 0, 1, 0, time.UTC).Local().Format("2006-01-02 15:04:05 MST")) {
		t.Errorf("grant list shows the expiry to the second: %d\n%s", code, out)
	}
}

// TestGrantRefusals: bad flags exit 2, a bad grant 1; nothing is written.
func TestGrantRefusals(t *testing.T) {
	dir := exampleCopy(t)
	polPath := filepath.Join(dir, "policy.toml")
	orig, _ := os.ReadFile(polPath)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--from", "mri-3", "--to", "ehr", "--for", "2 hours", "--reason", "x"}, 2, `--for: "2 hours" is not a duration`},
		{[]string{"--from", "mri-3", "--to", "ehr", "--for", "-1h", "--reason", "x"}, 2, "a grant lasts some time"},
		{[]string{"--from", "mri-3", "--to", "ehr", "--for", "200000d", "--reason", "x"}, 2, `--for: "200000d": at most 3650d`},
		{[]string{"--from", "mri-3", "--to", "ehr:", "--for", "1h", "--reason", "x"}, 2, `--to "ehr:": want SERVICE, SERVICE:PORT[/PROTO] or SERVICE:icmp`},
		{[]string{"--from", "mri-3", "--to", ":8080", "--for", "1h", "--reason", "x"}, 2, `--to ":8080": want SERVICE`},
		{[]string{"--from", "mri-3", "--to", "ehr:ssh", "--for", "1h", "--reason", "x"}, 2, `--to "ehr:ssh"`},
		{[]string{"--from", "mri-3", "--to", "ehr"}, 2, "usage: wardgate grant"},
		{[]string{"--from", "mri-33", "--to", "lab-results", "--for", "1h", "--reason", "x"}, 1, `wardgate grant: unknown identity "mri-33" (did you mean "mri-3"?)`},
		{[]string{"--from", "mri-3", "--to", "lab-results", "--for", "1h"}, 1, "a grant needs a reason"},
		{[]string{"--from", "mri-3", "--to", "ehr", "--for", "1h", "--reason", "x"}, 1, `test mri-3 -> ehr: expected deny, got allow by rule "grant-mri-3-ehr"`},
	} {
		code, _, errOut := runCLI(append([]string{"grant", "-c", polPath}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, errOut)
		}
	}
	if text, _ := os.ReadFile(polPath); !bytes.Equal(text, orig) {
		t.Error("a refused grant changed the policy")
	}
}

func TestRemaining(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{2 * time.Hour, "2h"},
		{2*time.Hour - time.Minute, "1h59m"},
		{time.Hour + 5*time.Minute + 30*time.Second, "1h5m"},
		{59 * time.Minute, "59m"},
		{42 * time.Second, "42s"},
		{76 * time.Hour, "3d4h"},
		{0, "expired"},
	} {
		if got := remaining(now.Add(tc.d), now); got != tc.want {
			t.Errorf("remaining(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
