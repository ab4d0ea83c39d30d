package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay/memnet"
)

const quarantinePolicy = `[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.1:443"]

[[service]]
name = "patch"
site = "leeds"
endpoints = ["127.0.0.1:80"]

[[rule]]
name = "alice-all"
from = ["alice"]
to = ["ehr", "patch"]

[quarantine]
allow = ["patch"]
`

// lockedBuffer is an audit sink the gateway writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startQuarantineGateway runs a real gateway (on an in-memory WireGuard
// transport) with an admin socket, and returns its gateway.toml.
func startQuarantineGateway(t *testing.T) (string, *lockedBuffer) {
	dir, err := os.MkdirTemp("", "wgq") // short: a unix socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	gwPriv, _ := wgkey.NewPrivate()
	alicePriv, _ := wgkey.NewPrivate()
	gwPub, alicePub := gwPriv.Public(), alicePriv.Public()
	write := func(name, text string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("gw.key", gwPriv.Base64()+"\n", 0o600)
	write("policy.toml", fmt.Sprintf(quarantinePolicy, gwPub, alicePub), 0o644)
	write("gateway.toml", "site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"gw.key\"\nlisten = \"127.0.0.1:51820\"\n[admin]\nsocket = \"admin.sock\"\n", 0o644)
	cfg, err := gateway.LoadConfig(filepath.Join(dir, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	audit := &lockedBuffer{}
	g, err := gateway.Start(cfg, gateway.Options{
		Bind:  memnet.NewSwitch().Bind(netip.MustParseAddr("127.0.0.1")),
		Audit: gateway.NewAuditLogger(audit),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return filepath.Join(dir, "gateway.toml"), audit
}

func TestQuarantineCommands(t *testing.T) {
	conf, audit := startQuarantineGateway(t)

	code, out, errs := runCLI("quarantine", "-c", conf, "alice", "--reason", "EDR alert 4711")
	if code != 0 || !strings.Contains(out, "quarantined alice") {
		t.Fatalf("quarantine: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI("quarantine", "list", "-c", conf)
	uid := "uid " + strconv.Itoa(os.Getuid())
	if code != 0 || !strings.Contains(out, "alice") || !strings.Contains(out, uid) || !strings.Contains(out, "EDR alert 4711") || !strings.Contains(out, "leeds") {
		t.Errorf("quarantine list: %d\n%s", code, out)
	}
	if !strings.Contains(audit.String(), `"event":"identity.quarantine"`) || !strings.Contains(audit.String(), `"by":"`+uid) {
		t.Errorf("no identity.quarantine with the caller's uid in the audit log:\n%s", audit.String())
	}
	// Indented like status's other tables; the time says its zone.
	if code, out, _ = runCLI("status", "-c", conf); code != 0 || !strings.Contains(out, "quarantined (1):\n  IDENTITY ") ||
		!regexpLine(out, `alice\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(.*`) {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, out, _ = runCLI("explain", "-c", conf, "--from", "alice", "--to", "ehr:443")
	if code != 0 || !strings.Contains(out, "deny: alice is quarantined; only the services of [quarantine] allow (patch) stay reachable") {
		t.Errorf("explain ehr: %d %q", code, out)
	}
	code, out, _ = runCLI("explain", "-c", conf, "--from", "alice", "--to", "patch:80", "--json")
	if code != 0 || !strings.Contains(out, `"verdict":"allow"`) {
		t.Errorf("explain patch: %d %q", code, out)
	}
	code, out, _ = runCLI("quarantine", "-c", conf, "alice", "--reason", "again")
	if code != 0 || !strings.Contains(out, "already quarantined") || !strings.Contains(out, "EDR alert 4711") {
		t.Errorf("quarantine twice: %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"quarantine", "-c", conf, "alic", "--reason", "x"}, 1, `unknown identity "alic"`},
		{[]string{"quarantine", "-c", conf, "leeds", "--reason", "x"}, 1, `"leeds" is a site gateway, not an identity`},
		{[]string{"quarantine", "-c", conf, "alice"}, 1, "--reason is required"},
		{[]string{"quarantine", "-c", conf, "--reason", "x"}, 2, "which identity?"},
		{[]string{"release", "-c", conf, "bob"}, 1, `unknown identity "bob"`},
	} {
		code, _, errs := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: %d %q, want %d %q", tc.args, code, errs, tc.code, tc.want)
		}
	}

	if code, out, errs = runCLI("release", "-c", conf, "alice", "--reason", "reimaged"); code != 0 || !strings.Contains(out, "released alice") {
		t.Fatalf("release: %d %q %q", code, out, errs)
	}
	if code, out, _ = runCLI("quarantine", "list", "-c", conf); code != 0 || !strings.Contains(out, "nobody is quarantined") {
		t.Errorf("list after release: %d %q", code, out)
	}
	code, out, _ = runCLI("explain", "-c", conf, "--from", "alice", "--to", "ehr:443")
	if code != 0 || !strings.HasPrefix(out, "allow") {
		t.Errorf("explain after release: %d %q", code, out)
	}
	if code, out, _ = runCLI("explain", "-c", conf, "--from", "alice", "--to", "ehr:443", "--quarantined"); !strings.Contains(out, "alice is quarantined") {
		t.Errorf("explain --quarantined: %d %q", code, out)
	}
	if !strings.Contains(audit.String(), `"event":"identity.release"`) {
		t.Error("no identity.release in the audit log")
	}
}
