package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/internal/enroll"
)

// exampleCopy copies configs/example into a temp dir (keys keep mode 0600).
func exampleCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "../../configs/example/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dir
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestPeerAddListRemove(t *testing.T) {
	dir := exampleCopy(t)
	gw := filepath.Join(dir, "gateway.toml")
	polPath := filepath.Join(dir, "policy.toml")
	orig, _ := os.ReadFile(polPath)

	// Flags after the name; a group that reaches real LAN-style services.
	code, out, errOut := runCLI("peer", "add", "-c", gw, "desk-1", "--groups", "clinical-desktop")
	if code != 0 {
		t.Fatalf("peer add: %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"[Interface]\nPrivateKey = ", "\nAddress = 100.80.0.3/32\n", "\nDNS = 100.80.0.1\n",
		"[Peer]\n", "\nPublicKey = LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU=\n",
		"\nEndpoint = 127.0.0.1:51820\n", "\nAllowedIPs = 100.80.0.0/16, 100.81.0.0/16\n", "\nPersistentKeepalive = 25\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "added identity desk-1 (100.80.0.3)") || strings.Contains(out, "added identity") {
		t.Errorf("message not on stderr only: stdout %q stderr %q", out, errOut)
	}
	now, _ := os.ReadFile(polPath)
	if !bytes.HasPrefix(now, orig) {
		t.Fatal("peer add did not keep the policy text")
	}

	// --pubkey: no private key in the config; --site; -c a policy.toml.
	_, pubKey, err := enroll.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := pubKey.String()
	code, out, errOut = runCLI("peer", "add", "desk-2", "-c", polPath, "--site", "york", "--pubkey", pub, "--groups=radiology", "--qr")
	if code != 0 {
		t.Fatalf("peer add --pubkey: %d\n%s", code, errOut)
	}
	if strings.Contains(out, "\nPrivateKey") || !strings.Contains(out, "# PrivateKey = fill in") || !strings.Contains(out, "Endpoint = 127.0.0.1:51821") {
		t.Errorf("--pubkey config:\n%s", out)
	}
	if !strings.Contains(errOut, "█") || strings.Contains(out, "█") {
		t.Error("QR code not on stderr")
	}

	code, out, _ = runCLI("peer", "list", "-c", gw)
	if code != 0 || !strings.Contains(out, "desk-1") || !regexpLine(out, `desk-2\s+york\s+100\.80\.0\.4\s+radiology`) || !regexpLine(out, `mri-3\s+york\s+lan 192\.168\.20\.13/32\s+medical-device`) {
		t.Fatalf("peer list: %d\n%s", code, out)
	}
	// The result is still a valid config for check.
	if code, _, errOut := runCLI("check", "-c", gw); code != 0 {
		t.Fatalf("check after add: %s", errOut)
	}

	// Refusals exit 1 and write nothing.
	before, _ := os.ReadFile(polPath)
	for _, args := range [][]string{
		{"peer", "add", "-c", gw, "desk-1", "--groups", "it"},          // exists
		{"peer", "add", "-c", gw, "desk-3", "--site", "hull"},          // unknown site
		{"peer", "remove", "-c", gw, "ward-12-desktop"},                // named by tests
		{"peer", "remove", "-c", gw, "nobody"},                         // unknown
		{"peer", "add", "-c", polPath, "desk-4", "--groups", "it", ""}, // two names
	} {
		code, _, errOut := runCLI(args...)
		if code == 0 {
			t.Errorf("%v: exit 0", args)
		}
		if args[1] == "remove" && args[4] == "ward-12-desktop" && !strings.Contains(errOut, "policy.toml:") {
			t.Errorf("%v: no file:line in %q", args, errOut)
		}
	}
	if after, _ := os.ReadFile(polPath); !bytes.Equal(after, before) {
		t.Fatal("a refused command changed the policy")
	}

	for _, name := range []string{"desk-2", "desk-1"} {
		if code, _, errOut := runCLI("peer", "remove", "-c", gw, name); code != 0 || !strings.Contains(errOut, "removed identity "+name) {
			t.Fatalf("peer remove %s: %d %s", name, code, errOut)
		}
	}
	if now, _ := os.ReadFile(polPath); !bytes.Equal(now, orig) {
		t.Fatal("add then remove did not give the original policy back")
	}
}

func TestPeerUsage(t *testing.T) {
	for _, args := range [][]string{
		{"peer"}, {"peer", "frobnicate"}, {"peer", "add", "desk"}, {"peer", "add", "-c", "x.toml"},
		{"peer", "add", "-c", "x", "n", "--pubkey", "nope"}, {"peer", "list"}, {"peer", "remove", "-c", "x"},
	} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCLI("peer", "add", "-c", filepath.Join(exampleCopy(t), "policy.toml"), "desk"); code != 2 || !strings.Contains(errOut, "--site") {
		t.Errorf("add to a policy.toml without --site: %d %s", code, errOut)
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := newFlags("t", &bytes.Buffer{})
	g := fs.String("groups", "", "")
	q := fs.Bool("qr", false, "")
	pos, err := parseInterspersed(fs, []string{"a", "--groups", "x,y", "b", "--qr", "--", "--c"})
	if err != nil || *g != "x,y" || !*q || strings.Join(pos, " ") != "a b --c" {
		t.Fatalf("pos %q groups %q qr %v err %v", pos, *g, *q, err)
	}
}
