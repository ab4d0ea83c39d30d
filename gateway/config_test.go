package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error, "file:line:col: ..." included
	}{
		{"unknown key", "site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\ncolour = \"blue\"\n",
			[]string{`gateway.toml:4:1: unknown key "colour"`}},
		{"unknown key in a table", "site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\n[dns]\nupstreams = [\"1.1.1.1\"]\n",
			[]string{`gateway.toml:5:1: unknown key "dns.upstreams"`}},
		{"bad enforce", "site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\nenforce = \"maybe\"\n",
			[]string{`gateway.toml:4:1: enforce "maybe"`}},
		{"missing required keys", "listen = \"0.0.0.0:51820\"\n",
			[]string{"site is required", "policy is required", "private_key_file is required"}},
		{"bad listen and upstream", "site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\nlisten = \"51820\"\n[dns]\nupstream = [\"resolver.example\"]\n",
			[]string{`gateway.toml:4:1: listen "51820"`, `gateway.toml:6:1: dns upstream "resolver.example"`}},
		{"bad duration", "site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[limits]\ndial_timeout = \"soon\"\n",
			[]string{"gateway.toml:5", "soon"}},
		{"syntax error", "site = \"a\npolicy = 1\n", []string{`gateway.toml:1:10: syntax error: strings cannot contain newlines (after key "site")`}},
		{"zero and negative limits", "site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[limits]\ntcp_idle = \"-1s\"\ndrain = \"0s\"\nflows_per_identity = -5\npending_total = 0\n[dns]\nrate_per_identity = -1.0\negress_ttl_min = \"-30s\"\n",
			[]string{
				`gateway.toml:5:1: limits.tcp_idle = "-1s" must be positive (leave it out for the default)`,
				`gateway.toml:6:1: limits.drain = "0s" must be positive`,
				`gateway.toml:7:1: limits.flows_per_identity = -5 must be positive`,
				`gateway.toml:8:1: limits.pending_total = 0 must be positive`,
				`gateway.toml:10:1: dns.rate_per_identity = -1 must be a positive number of queries per second`,
				`gateway.toml:11:1: dns.egress_ttl_min = "-30s" must be positive`,
			}},
		{"too big", "site = \"a\"\n#" + strings.Repeat("x", 4<<20) + "\n", []string{"gateway.toml: file is 4194317 bytes, more than the 4194304 accepted"}},
		{"egress ttl min above max", "site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[dns]\negress_ttl_min = \"2h\"\negress_ttl_max = \"1h\"\n",
			[]string{`gateway.toml:5:1: egress_ttl_min 2h0m0s must not be above egress_ttl_max 1h0m0s`}},
		{"bad names and huge values", "site = \"le eds\"\npolicy = \"p\"\nprivate_key_file = \"k\"\nlisten = \"" + strings.Repeat("9", 1<<20) + "\"\n[[listener]]\nlisten = \"127.0.0.1:104\"\nservice = \"" + strings.Repeat("s", 65) + "\"\n",
			[]string{
				`gateway.toml:1:1: site: name "le eds" has ' '`,
				`gateway.toml:4:1: listen "9999999999999999999999999999999999999999"... (1048576 bytes): want ip:port`,
				`gateway.toml:7:1: listener 1: service: name "ssssssssssssssssssssssssssssssssssssssss"... (65 bytes) is longer than 64 bytes`,
			}},
		{"bad listeners", "site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[[listener]]\nlisten = \"192.168.20.1:104\"\nservice = \"pacs\"\n[[listener]]\nlisten = \"192.168.20.1:104/sctp\"\n",
			[]string{"gateway.toml:8:1: listener 2: listen", `protocol "sctp"`, "gateway.toml:7:1: listener 2: service is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("gateway.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %.2000q lacks %q", err, w)
				}
			}
			if len(err.Error()) > 2000 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("/etc/wardgate/gateway.toml", []byte("site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"keys/leeds.key\"\n[limits]\nudp_idle = \"90s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Enforce != "enforce" || c.Listen != "0.0.0.0:51820" || c.Log.Audit != "-" || !*c.DNS.QueryLog {
		t.Errorf("defaults: %+v", c)
	}
	want := Defaults
	want.UDPIdle = 90 * time.Second
	if c.Limits != want {
		t.Errorf("limits %+v, want %+v", c.Limits, want)
	}
	if got := c.Path(c.PrivateKeyFile); got != "/etc/wardgate/keys/leeds.key" {
		t.Errorf("key path %q: relative paths resolve against the config's directory", got)
	}
}

func TestPrivateKeyFileRefusedWhenReadable(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "gw.key")
	os.WriteFile(keyPath, []byte(newTestKey(t).privB64()+"\n"), 0o644)
	c, err := ParseConfig(filepath.Join(dir, "gateway.toml"), []byte("site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"gw.key\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ReadPrivateKey()
	if !errors.Is(err, ErrKeyTooOpen) || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("a 0644 key file: %v", err)
	}
	os.Chmod(keyPath, 0o600)
	if _, err := c.ReadPrivateKey(); err != nil {
		t.Fatalf("a 0600 key file: %v", err)
	}
	os.WriteFile(keyPath, []byte("not a key\n"), 0o600)
	if _, err := c.ReadPrivateKey(); err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("a garbage key file: %v", err)
	}
}

func TestConfigAgainstPolicy(t *testing.T) {
	be := startTestBackends(t)
	k := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(sprintfPolicy(k[0], k[1], k[2], be)), 0o644)
	gw := filepath.Join(dir, "gateway.toml")
	os.WriteFile(gw, []byte("site = \"york\"\npolicy = \"policy.toml\"\nprivate_key_file = \"k\"\n[[listener]]\nlisten = \"127.0.0.1:104\"\nservice = \"pacs\"\n"), 0o644)
	c, err := LoadConfig(gw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.LoadPolicy()
	for _, w := range []string{gw + `:1:1: unknown site "york"`, gw + `:6:1: listener 1: unknown service "pacs"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}

	// A listener in front of an egress-only service has nowhere to go.
	text := sprintfPolicy(k[0], k[1], k[2], be) + "\n[[service]]\nname = \"nhs-web\"\negress = [\"*.nhs.uk\"]\nports = [\"443/tcp\"]\n"
	os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(text), 0o644)
	os.WriteFile(gw, []byte("site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"k\"\n[[listener]]\nlisten = \"127.0.0.1:443\"\nservice = \"nhs-web\"\n"), 0o644)
	if c, err = LoadConfig(gw); err != nil {
		t.Fatal(err)
	}
	if _, err = c.LoadPolicy(); err == nil || !strings.Contains(err.Error(), gw+`:6:1: listener 1: service "nhs-web" is egress-only`) {
		t.Errorf("a listener for an egress-only service: %v", err)
	}
}

// TestLoadPolicyRunsTests: a policy whose [[test]] fails is refused by
// LoadPolicy, so run refuses what reload and check refuse.
func TestLoadPolicyRunsTests(t *testing.T) {
	dir := t.TempDir()
	pol := fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "x.internal"
[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
[[identity]]
name = "alice"
key = %q
address = "100.80.1.1"
site = "leeds"
[[service]]
name = "pacs"
site = "leeds"
endpoints = ["127.0.0.10:443"]
[[rule]]
name = "alice-pacs"
from = ["alice"]
to = ["pacs"]
[[test]]
from = "alice"
to = "pacs:443"
expect = "%%s"
`, newTestKey(t).pubB64(), newTestKey(t).pubB64())
	gw := filepath.Join(dir, "gateway.toml")
	os.WriteFile(gw, []byte("site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"k\"\n"), 0o644)
	c, err := LoadConfig(gw)
	if err != nil {
		t.Fatal(err)
	}
	polPath := filepath.Join(dir, "policy.toml")
	os.WriteFile(polPath, []byte(fmt.Sprintf(pol, "allow")), 0o644)
	if _, err := c.LoadPolicy(); err != nil {
		t.Fatalf("passing tests: %v", err)
	}
	os.WriteFile(polPath, []byte(fmt.Sprintf(pol, "deny")), 0o644)
	_, err = c.LoadPolicy()
	want := polPath + `:22:1: test alice -> pacs:443: expected deny, got allow by rule "alice-pacs"`
	if err == nil || err.Error() != want {
		t.Fatalf("failing test: %v\nwant %s", err, want)
	}
}
