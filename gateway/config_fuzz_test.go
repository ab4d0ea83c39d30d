package gateway

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/policy"
)

// FuzzParseConfig: no gateway.toml makes ParseConfig panic; a refusal is a
// *policy.LoadError of short, file-named problems; an accepted config has
// its defaults filled in and no zero or negative limit.
func FuzzParseConfig(f *testing.F) {
	data, err := os.ReadFile("../configs/example/gateway.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range []string{
		"site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\ncolour = \"blue\"\n",
		"site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\n[dns]\nupstreams = [\"1.1.1.1\"]\n",
		"site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\nlisten = \"51820\"\n[dns]\nupstream = [\"resolver.example\"]\n",
		"site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[limits]\ndial_timeout = \"soon\"\ntcp_idle = \"-1s\"\npending_total = 0\n",
		"site = \"a\npolicy = 1\n",
		"site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[[listener]]\nlisten = \"192.168.20.1:104\"\nservice = \"pacs\"\n[[listener]]\nlisten = \"[::1]:104/udp\"\n",
		"site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\n[dns]\nrate_per_identity = nan\negress_ttl_min = \"2h\"\negress_ttl_max = \"1h\"\n",
		"site = \"a\"\npolicy = \"p\"\nprivate_key_file = \"k\"\nlimits = { drain = \"1s\" }\nlistener = [{ listen = \"127.0.0.1:1\", service = \"x\" }]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("gateway.toml", data)
		if err != nil {
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error is %T, not *policy.LoadError: %v", err, err)
			}
			for _, p := range le.Problems {
				if p.File != "gateway.toml" || p.Msg == "" {
					t.Fatalf("problem without file or text: %+v", p)
				}
				if len(p.Msg) > 2048 && len(p.Msg) > len(data) {
					t.Fatalf("problem of %d bytes for %d bytes of input", len(p.Msg), len(data))
				}
			}
			return
		}
		l := c.Limits
		if l.FlowsPerIdentity <= 0 || l.PendingPerIdentity <= 0 || l.PendingTotal <= 0 ||
			l.DialTimeout <= 0 || l.TCPIdle <= 0 || l.UDPIdle <= 0 || l.DNSIdle <= 0 || l.Drain <= 0 {
			t.Fatalf("accepted limits %+v", l)
		}
		if c.Site == "" || c.Policy == "" || c.PrivateKeyFile == "" || strings.TrimSpace(c.Listen) == "" {
			t.Fatalf("accepted without a required key: %+v", c)
		}
		for _, ln := range c.Listener {
			if _, _, err := ParseListen(ln.Listen); err != nil || ln.Service == "" {
				t.Fatalf("accepted listener %+v: %v", ln, err)
			}
		}
	})
}
