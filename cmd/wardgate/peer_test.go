package main

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/enroll"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
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
	for _, want := range []string{"apply it on every gateway", "\n  leeds (home): adds it as a WireGuard peer\n", "\n  york: believes its flows when leeds relays them\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("peer add does not say %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "on the gateway to apply") {
		t.Error("peer add still speaks of one gateway")
	}

	// --pubkey: no private key in the config; --site; -c a policy.toml.
	pub := newPublic(t).String()
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
		code, _, errOut := runCLI("peer", "remove", "-c", gw, name)
		if code != 0 || !strings.Contains(errOut, "removed identity "+name) || !strings.Contains(errOut, "address is retired") ||
			!strings.Contains(errOut, "york (home): removes its WireGuard peer") && !strings.Contains(errOut, "leeds (home): removes its WireGuard peer") {
			t.Fatalf("peer remove %s: %d %s", name, code, errOut)
		}
	}
	// The blocks became retired-address lines; the rest is as it was.
	note := func(name, addr string) string {
		return enroll.RetireNote(&policy.Identity{Name: name, Address: netip.MustParseAddr(addr)}, time.Now())
	}
	mriEnd := "groups = [\"medical-device\"]\n"
	want := strings.Replace(string(orig), mriEnd, mriEnd+"\n"+note("desk-1", "100.80.0.3")+"\n\n"+note("desk-2", "100.80.0.4")+"\n", 1)
	if now, _ := os.ReadFile(polPath); string(now) != want {
		t.Fatalf("after add and remove:\n%s\nwant\n%s", now, want)
	}
	// A new key never gets a freed address.
	if code, out, errOut := runCLI("peer", "add", "-c", gw, "desk-3"); code != 0 || !strings.Contains(out, "Address = 100.80.0.5/32") {
		t.Fatalf("add after remove: %d %s %s", code, out, errOut)
	}
}

// wgQuick parses a wg-quick config as wg-quick does: sections, "Key = value".
func wgQuick(t *testing.T, conf string) map[string]string {
	t.Helper()
	kv, section := map[string]string{}, ""
	for _, l := range strings.Split(conf, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("config line %q is not KEY = VALUE", l)
			}
			kv[section+strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

// publicOf derives the public key of a config's private key.
func publicOf(t *testing.T, priv string) wgkey.Public {
	t.Helper()
	k, err := wgkey.ParsePrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// newPublic is the public key of a new key pair.
func newPublic(t *testing.T) wgkey.Public {
	t.Helper()
	k, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func TestPeerAddOutputFile(t *testing.T) {
	dir := exampleCopy(t)
	gw := filepath.Join(dir, "gateway.toml")
	polPath := filepath.Join(dir, "policy.toml")
	conf := filepath.Join(dir, "desk.conf")

	code, out, errOut := runCLI("peer", "add", "-c", gw, "desk-1", "-o", conf)
	if code != 0 || out != "" || !strings.Contains(errOut, "wrote the client config to "+conf) {
		t.Fatalf("peer add -o: %d stdout %q stderr %s", code, out, errOut)
	}
	st, err := os.Stat(conf)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	data, _ := os.ReadFile(conf)
	kv := wgQuick(t, string(data))
	p, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	if id := p.Identity("desk-1"); id == nil || publicOf(t, kv["[Interface]PrivateKey"]) != id.Key || kv["[Interface]Address"] != id.Address.String()+"/32" {
		t.Fatalf("config does not match the enrolled identity:\n%s", data)
	}

	// An existing file: refused before the policy is touched.
	before, _ := os.ReadFile(polPath)
	code, out, errOut = runCLI("peer", "add", "-c", gw, "desk-2", "-o", conf)
	if code != 1 || out != "" || !strings.Contains(errOut, "exists") || !strings.Contains(errOut, "--force") {
		t.Fatalf("-o over an existing file: %d %q %s", code, out, errOut)
	}
	if after, _ := os.ReadFile(polPath); !bytes.Equal(after, before) {
		t.Fatal("a refused -o changed the policy")
	}
	if now, _ := os.ReadFile(conf); !bytes.Equal(now, data) {
		t.Fatal("a refused -o changed the file")
	}
	// A refused add leaves no file behind.
	if code, _, _ := runCLI("peer", "add", "-c", gw, "desk-1", "-o", filepath.Join(dir, "dup.conf")); code != 1 {
		t.Fatal("adding an existing name succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "dup.conf")); !os.IsNotExist(err) {
		t.Fatalf("a refused add left its -o file: %v", err)
	}

	// --force replaces it, 0600 even when the old file was not.
	os.Chmod(conf, 0o644)
	code, _, errOut = runCLI("peer", "add", "-c", gw, "desk-2", "-o", conf, "--force")
	if code != 0 {
		t.Fatalf("--force: %d %s", code, errOut)
	}
	st, _ = os.Stat(conf)
	data2, _ := os.ReadFile(conf)
	if st.Mode().Perm() != 0o600 || !strings.Contains(string(data2), "# wardgate client config for desk-2") {
		t.Fatalf("--force: mode %v\n%s", st.Mode().Perm(), data2)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
	if code, _, _ := runCLI("peer", "add", "-c", gw, "desk-3", "--force"); code != 2 {
		t.Fatal("--force without -o accepted")
	}
}

func TestPeerRotate(t *testing.T) {
	dir := exampleCopy(t)
	gw := filepath.Join(dir, "gateway.toml")
	polPath := filepath.Join(dir, "policy.toml")
	oldKey := "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="

	code, out, errOut := runCLI("peer", "rotate", "-c", gw, "dr-khan-laptop")
	if code != 0 {
		t.Fatalf("peer rotate: %d %s", code, errOut)
	}
	p, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity("dr-khan-laptop")
	kv := wgQuick(t, out)
	if id.Key.String() == oldKey || publicOf(t, kv["[Interface]PrivateKey"]) != id.Key {
		t.Fatalf("the policy's key %s is not the config's:\n%s", id.Key, out)
	}
	if id.Address.String() != "100.80.1.10" || kv["[Interface]Address"] != "100.80.1.10/32" || kv["[Peer]Endpoint"] != "127.0.0.1:51820" {
		t.Fatalf("address or peer changed: %v\n%s", id.Address, out)
	}
	if data, _ := os.ReadFile(polPath); strings.Contains(string(data), oldKey) {
		t.Fatal("the old key is still in the policy")
	}
	for _, want := range []string{"refused", "new config on the client first", "leeds (home):", "\n  york:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("peer rotate does not say %q:\n%s", want, errOut)
		}
	}

	// --pubkey, -o: a config without a private key, in a 0600 file.
	pub := newPublic(t)
	conf := filepath.Join(dir, "khan.conf")
	code, out, errOut = runCLI("peer", "rotate", "dr-khan-laptop", "-c", polPath, "--pubkey", pub.String(), "-o", conf)
	data, _ := os.ReadFile(conf)
	if code != 0 || out != "" || strings.Contains(string(data), "\nPrivateKey") || !strings.Contains(string(data), "# PrivateKey = fill in") {
		t.Fatalf("rotate --pubkey -o: %d %q %s\n%s", code, out, errOut, data)
	}
	if p, _ := policy.Load(polPath); p.Identity("dr-khan-laptop").Key != pub {
		t.Fatal("--pubkey not in the policy")
	}

	before, _ := os.ReadFile(polPath)
	for _, args := range [][]string{
		{"peer", "rotate", "-c", gw, "nobody"},
		{"peer", "rotate", "-c", gw, "mri-3"},
		{"peer", "rotate", "-c", gw, "dr-khan-laptop", "--pubkey", "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="}, // ward-12-desktop's
		{"peer", "rotate", "-c", gw, "dr-khan-laptop", "-o", conf},                                                 // exists
	} {
		if code, _, _ := runCLI(args...); code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
	}
	for _, args := range [][]string{{"peer", "rotate", "-c", gw}, {"peer", "rotate", "x"}, {"peer", "rotate", "-c", gw, "x", "--pubkey", "nope"}} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if after, _ := os.ReadFile(polPath); !bytes.Equal(after, before) {
		t.Fatal("a refused rotate changed the policy")
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
