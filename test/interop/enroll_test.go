package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// wardgateCLI runs the wardgate binary and returns its exit code, stdout
// and stderr apart (peer add prints the config on stdout only).
func wardgateCLI(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(wardgateBin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wardgate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, o.String(), e.String()
}

// confValues returns the values of KEY = VALUE lines of a wg-quick config.
func confValues(conf, key string) []string {
	var out []string
	for _, l := range strings.Split(conf, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == key {
			for _, part := range strings.Split(v, ",") {
				out = append(out, strings.TrimSpace(part))
			}
		}
	}
	return out
}

// TestEnrollInterop: `wardgate peer add` enrols a desktop in a running
// gateway's policy, `wardgate reload` applies it, the printed config goes
// through `wg-quick strip` and `wg setconf` on a standard client, which
// then reaches exactly what its group allows; `status --json` and
// `flows --json` show it.
func TestEnrollInterop(t *testing.T) {
	requireInterop(t, "curl", "wg-quick")
	be := startBackends(t)
	gwKeys, alice := newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	policy := fmt.Sprintf(`# the enrolment test's policy: this comment must survive peer add
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
endpoint = "127.0.0.1:%d"

# alice makes group desk exist before the first desk is enrolled
[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["desk"]

[[service]]
name = "web"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:%d"]

# a LAN backend (TEST-NET, never dialled here): its address goes into
# the client's AllowedIPs
[[service]]
name = "lan-app"
site = "leeds"
endpoints = ["192.0.2.10:8443"]

[[rule]]
name = "desks-web"
from = ["group:desk"]
to = ["web", "lan-app"]
`, gwKeys.pub, port, alice.pub, be.web, be.payroll)
	s := writeSite(t, "leeds", gwKeys, port, policy, "\n[admin]\nsocket = \"admin.sock\"\n")
	gw := startGateway(t, s.dir, port)
	cfg := filepath.Join(s.dir, "gateway.toml")
	sock := filepath.Join(s.dir, "admin.sock")
	if st, err := os.Lstat(sock); err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o660 {
		t.Fatalf("admin socket %s: %v %v", sock, st, err)
	}

	code, _, stderr := wardgateCLI(t, "status", "--json", "-c", cfg)
	if code != 0 {
		t.Fatalf("status before: %d %s", code, stderr)
	}

	// Enrol desk-1 (flags after the name, as people type them).
	code, conf, stderr := wardgateCLI(t, "peer", "add", "-c", cfg, "desk-1", "--groups", "desk")
	if code != 0 {
		t.Fatalf("peer add: %d %s", code, stderr)
	}
	t.Logf("peer add: %s\n%s", stderr, conf)
	if !strings.Contains(stderr, "added identity desk-1 (100.80.0.2)") {
		t.Errorf("peer add message: %q", stderr)
	}
	if ep := confValues(conf, "Endpoint"); len(ep) != 1 || ep[0] != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("Endpoint %v", ep)
	}
	if ips := strings.Join(confValues(conf, "AllowedIPs"), " "); ips != "100.80.0.0/16 100.81.0.0/16 192.0.2.10/32" {
		t.Errorf("AllowedIPs %q: want the overlay and service prefixes and lan-app's address, not the loopback backends", ips)
	}
	if text, _ := os.ReadFile(filepath.Join(s.dir, "policy.toml")); !keepsLines(string(text), policy) {
		t.Fatal("peer add did not keep the policy text")
	}

	code, out, stderr := wardgateCLI(t, "reload", "-c", cfg)
	if code != 0 || !strings.HasPrefix(out, "reloaded: policy ") {
		t.Fatalf("reload: %d %q %s", code, out, stderr)
	}
	newHash := strings.Fields(strings.TrimPrefix(out, "reloaded: policy "))[0]
	gw.waitEvent(t, map[string]any{"event": "config.reload", "hash": newHash})

	// The config through the standard tools.
	confPath := filepath.Join(t.TempDir(), "wgdesk.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	stripped := run(t, "wg-quick", "strip", confPath)
	strippedPath := filepath.Join(t.TempDir(), "stripped.conf")
	if err := os.WriteFile(strippedPath, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newConfClient(t, strippedPath, confValues(conf, "Address"), confValues(conf, "AllowedIPs"))

	web := fmt.Sprintf("http://100.81.0.10:%d/", be.web)
	testwait.Until(t, 15*time.Second, "desk-1 to reach web", func() bool {
		out, err := c.exec(5*time.Second, "curl", "-sS", "--max-time", "3", web)
		return err == nil && out == "hello from ehr\n"
	})
	out, err := c.exec(10*time.Second, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", web)
	if err != nil || out != "200" {
		t.Fatalf("curl web: %v %q", err, out)
	}
	gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "desk-1", "service": "web", "rule": "desks-web"})
	out, err = c.exec(10*time.Second, "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://100.81.0.11:%d/", be.payroll))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("curl payroll (not allowed): want exit 7 (connection refused), got %v: %q", err, out)
	}
	gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "desk-1", "service": "payroll"})

	// status --json: the new policy, desk-1 with a handshake and bytes.
	code, out, stderr = wardgateCLI(t, "status", "--json", "-c", cfg)
	if code != 0 {
		t.Fatalf("status: %d %s", code, stderr)
	}
	var st struct {
		Site       string `json:"site"`
		PolicyHash string `json:"policy_hash"`
		Enforce    string `json:"enforce"`
		Peers      []struct {
			Name          string    `json:"name"`
			Kind          string    `json:"kind"`
			Address       string    `json:"address"`
			LastHandshake time.Time `json:"last_handshake"`
			RxBytes       uint64    `json:"rx_bytes"`
		} `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Site != "leeds" || st.PolicyHash != newHash || st.Enforce != "enforce" {
		t.Errorf("status: site %q hash %q (want %q) enforce %q", st.Site, st.PolicyHash, newHash, st.Enforce)
	}
	found := false
	for _, p := range st.Peers {
		if p.Name == "desk-1" {
			found = true
			if p.Kind != "identity" || p.Address != "100.80.0.2" || p.LastHandshake.IsZero() || p.RxBytes == 0 {
				t.Errorf("desk-1 in status: %+v", p)
			}
		}
	}
	if !found {
		t.Errorf("desk-1 not among the peers:\n%s", out)
	}
	if code, out, _ := wardgateCLI(t, "status", "-c", cfg); code != 0 || !strings.Contains(out, "desk-1") {
		t.Errorf("status table: %d\n%s", code, out)
	}

	// flows --json while desk-1 holds a connection open.
	ctx, cancel := context.WithCancel(context.Background())
	hold := c.cmd(ctx, os.Args[0], "-test.run=^$", fmt.Sprintf("100.81.0.10:%d,1", be.web))
	hold.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER=hold")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); hold.Wait() }()
	testwait.Until(t, 10*time.Second, "desk-1's flow in flows --json", func() bool {
		code, out, _ := wardgateCLI(t, "flows", "--json", "-c", cfg)
		var fl []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &fl) != nil {
			return false
		}
		for _, f := range fl {
			if f["identity"] == "desk-1" && f["service"] == "web" && f["rule"] == "desks-web" {
				return true
			}
		}
		return false
	})

	// A bad policy: reload exits 1 with file:line, the old policy stays.
	pf := filepath.Join(s.dir, "policy.toml")
	good, _ := os.ReadFile(pf)
	os.WriteFile(pf, append(bytes.Clone(good), "\n[[rule]]\nname = \"typo\"\nfrom = [\"group:dsek\"]\nto = [\"web\"]\n"...), 0o644)
	code, _, stderr = wardgateCLI(t, "reload", "-c", cfg)
	if code != 1 || !strings.Contains(stderr, "policy.toml:") || !strings.Contains(stderr, "dsek") {
		t.Errorf("bad reload: %d %s", code, stderr)
	}
	os.WriteFile(pf, good, 0o644)
	if _, out, _ := wardgateCLI(t, "status", "--json", "-c", cfg); !strings.Contains(out, newHash) {
		t.Errorf("after a refused reload the hash changed:\n%s", out)
	}
}

// newConfClient starts Debian's wireguard-go in the root namespace (its
// UDP socket stays on loopback), moves the interface into a new namespace
// and configures it there from a `wg-quick strip`ped file with `wg setconf`,
// adding the addresses and the routes of AllowedIPs with ip, as wg-quick
// would.
func newConfClient(t testing.TB, stripped string, addrs, allowed []string) *client {
	t.Helper()
	c := startDevice(t, "wireguard-go", "desk-1")
	run(t, "ip", "netns", "exec", c.netns.name, "wg", "setconf", c.dev, stripped)
	for _, a := range addrs {
		run(t, "ip", "-n", c.netns.name, "addr", "add", a, "dev", c.dev)
	}
	run(t, "ip", "-n", c.netns.name, "link", "set", c.dev, "up")
	for _, r := range allowed {
		run(t, "ip", "-n", c.netns.name, "route", "add", r, "dev", c.dev)
	}
	return c
}

// keepsLines reports whether every line of old is in text, in order:
// an edit that only added lines.
func keepsLines(text, old string) bool {
	lines := strings.Split(text, "\n")
	i := 0
	for _, want := range strings.Split(old, "\n") {
		for i < len(lines) && lines[i] != want {
			i++
		}
		if i == len(lines) {
			return false
		}
		i++
	}
	return true
}
