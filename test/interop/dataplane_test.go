package interop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/internal/testwait"
)

// backends are real sockets on loopback that services point at.
type backends struct {
	web, payroll int // HTTP ports
	echo         int // UDP echo port
	bigSum       string
}

// bigSize is the download that must arrive intact through the tunnel.
const bigSize = 20 << 20

func startBackends(t testing.TB) *backends {
	t.Helper()
	big := make([]byte, bigSize)
	rand.Read(big)
	sum := sha256.Sum256(big)
	b := &backends{bigSum: hex.EncodeToString(sum[:])}

	serve := func(h http.Handler) int {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	web := http.NewServeMux()
	web.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from ehr\n") })
	web.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	b.web = serve(web)
	b.payroll = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "payroll\n") }))

	b.echo = int(testnet.UDPEcho(t).Port())
	return b
}

// leedsPolicy is the start of a test policy: the overlay, the Leeds site
// and two identities homed there, alice (group clinical) and bob (admin).
func leedsPolicy(gwPub, alicePub, bobPub string) string {
	return fmt.Sprintf(`
[overlay]
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
groups = ["clinical"]

[[identity]]
name = "bob"
key = %q
address = "100.80.1.11"
site = "leeds"
groups = ["admin"]
`, gwPub, alicePub, bobPub)
}

// site is one gateway's files and keys, written to a temp dir.
type site struct {
	dir  string
	keys keypair
	port int
}

// writeSite writes gateway.toml, policy.toml and the key file.
func writeSite(t testing.TB, name string, keys keypair, port int, policy, extra string) *site {
	t.Helper()
	return writeSiteOn(t, "127.0.0.1", name, keys, port, policy, extra)
}

// writeSiteOn is writeSite with the WireGuard listen host chosen: tests
// listen on 127.0.0.1 (wardgate's single-address bind); the figures measure
// both that and 0.0.0.0 (the default, wireguard-go's bind).
func writeSiteOn(t testing.TB, host, name string, keys keypair, port int, policy, extra string) *site {
	t.Helper()
	s := &site{dir: t.TempDir(), keys: keys, port: port}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(s.dir, name+".key"), []byte(keys.priv+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(s.dir, "policy.toml"), []byte(policy), 0o644))
	gw := fmt.Sprintf(`site = %q
policy = "policy.toml"
private_key_file = %q
listen = "%s:%d"

[log]
audit = "audit.log"
level = "debug"

[limits]
drain = "1s"
%s`, name, name+".key", host, port, extra)
	must(os.WriteFile(filepath.Join(s.dir, "gateway.toml"), []byte(gw), 0o644))
	return s
}

// TestDataPlaneInterop: standard WireGuard clients in namespaces find
// exactly the access the policy grants through a running `wardgate run`.
func TestDataPlaneInterop(t *testing.T) {
	requireInterop(t, "curl", "ping", "sha256sum", "iperf3")
	be := startBackends(t)
	iperfPort := freeTCPPort(t)
	iperfServer(t, nil, "127.0.0.1", iperfPort)
	gwKeys, alice, bob := newKeypair(t), newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	policy := leedsPolicy(gwKeys.pub, alice.pub, bob.pub) + fmt.Sprintf(`
[[service]]
name = "iperf"
site = "leeds"
vip = "100.81.0.20"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "echo"
site = "leeds"
vip = "100.81.0.12"
endpoints = ["127.0.0.1:%d/udp"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr", "echo", "iperf"]

[[rule]]
name = "admin-payroll"
from = ["group:admin"]
to = ["payroll"]
`, iperfPort, be.web, be.payroll, be.echo)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	s := writeSite(t, "leeds", gwKeys, port, policy, fmt.Sprintf("\n[admin]\nmetrics = %q\n", metricsAddr))
	gw := startGateway(t, s.dir, port)

	a := newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port)
	b := newClient(t, "bob", "100.80.1.11", bob, gwKeys.pub, port)

	t.Run("ping gateway", func(t *testing.T) {
		testwait.Until(t, 10*time.Second, "ping of the gateway's overlay address", func() bool {
			_, err := a.exec(3*time.Second, "ping", "-c", "1", "-W", "1", "100.80.0.1")
			return err == nil
		})
	})

	ehr := fmt.Sprintf("http://100.81.0.10:%d", be.web)
	payroll := fmt.Sprintf("http://100.81.0.11:%d/", be.payroll)

	t.Run("allowed curl", func(t *testing.T) {
		out, err := a.exec(10*time.Second, "curl", "-sS", "--max-time", "5", ehr+"/")
		if err != nil || out != "hello from ehr\n" {
			t.Fatalf("curl ehr: %v: %q", err, out)
		}
		ev := gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "ehr"})
		for k, want := range map[string]any{"site": "leeds", "proto": "tcp", "port": be.web, "rule": "clinical-ehr", "dst": fmt.Sprintf("100.81.0.10:%d", be.web)} {
			if fmt.Sprint(ev[k]) != fmt.Sprint(want) {
				t.Errorf("flow.allow %s = %v, want %v", k, ev[k], want)
			}
		}
		if src, _ := ev["src"].(string); !strings.HasPrefix(src, "100.80.1.10:") {
			t.Errorf("flow.allow src = %q", src)
		}
		if _, ok := ev["time"].(string); !ok {
			t.Errorf("flow.allow has no time: %v", ev)
		}
	})

	t.Run("denied curl is refused at once", func(t *testing.T) {
		start := time.Now()
		out, err := a.exec(10*time.Second, "curl", "-sS", "--max-time", "5", payroll)
		took := time.Since(start)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("curl payroll: want exit 7 (connection refused), got %v: %q", err, out)
		}
		if took > time.Second {
			t.Errorf("refusal took %v, want well under a second", took)
		}
		ev := gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "payroll"})
		if ev["reason"] != "no-rule" {
			t.Errorf("flow.deny reason = %v, want no-rule", ev["reason"])
		}
		// bob may reach payroll: the same destination, another identity.
		out, err = b.exec(10*time.Second, "curl", "-sS", "--max-time", "5", payroll)
		if err != nil || out != "payroll\n" {
			t.Fatalf("bob curl payroll: %v: %q", err, out)
		}
	})

	t.Run("unknown destination", func(t *testing.T) {
		_, err := a.exec(10*time.Second, "curl", "-sS", "--max-time", "5", "http://100.81.0.99:8080/")
		if err == nil {
			t.Fatal("curl to an unknown destination succeeded")
		}
		gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "dst": "100.81.0.99:8080", "reason": "no-service"})
	})

	t.Run("20MB download intact", func(t *testing.T) {
		out, err := a.exec(60*time.Second, "sh", "-c", "curl -sS --max-time 50 "+ehr+"/big | sha256sum")
		if err != nil {
			t.Fatalf("download: %v: %s", err, out)
		}
		if got := strings.Fields(out)[0]; got != be.bigSum {
			t.Fatalf("sha256 through the tunnel %s, want %s", got, be.bigSum)
		}
		testwait.Until(t, 5*time.Second, "flow.end of the download", func() bool {
			for _, ev := range gw.events(t) {
				if ev["event"] == "flow.end" && ev["identity"] == "alice" {
					if n, _ := ev["bytes_out"].(float64); n >= bigSize {
						return true
					}
				}
			}
			return false
		})
	})

	t.Run("iperf3 through the tunnel", func(t *testing.T) {
		r := iperf(t, a.netns, "100.81.0.20", iperfPort, 2, 1)
		if r.bytes < 1<<20 {
			t.Fatalf("iperf3 moved %v bytes in a second", r.bytes)
		}
		t.Logf("iperf3, 2 streams, 1 s: %.0f Mbit/s", r.bps/1e6)
		gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "iperf"})
	})

	t.Run("udp echo for the allowed identity only", func(t *testing.T) {
		echo := fmt.Sprintf("100.81.0.12:%d", be.echo)
		if out, err := a.helper(10*time.Second, "udpecho", echo); err != nil {
			t.Fatalf("alice udp echo: %v: %s", err, out)
		}
		if out, err := b.helper(10*time.Second, "udpecho", echo); err == nil {
			t.Fatalf("bob udp echo went through: %s", out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "bob", "service": "echo", "proto": "udp"})
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		for _, want := range []string{
			`wardgate_flows_total{rule="clinical-ehr",service="ehr",verdict="allow"}`,
			`wardgate_flows_total{rule="",service="payroll",verdict="deny"}`,
			`wardgate_flows_total{rule="",service="",verdict="deny"}`,
			`wardgate_enforcing 1`,
			`wardgate_peers 2`,
			`wardgate_decision_seconds_bucket`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		var out float64
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, `wardgate_bytes_total{direction="out"} `); ok {
				out, _ = strconv.ParseFloat(v, 64)
			}
		}
		if out < bigSize {
			t.Errorf("wardgate_bytes_total{direction=\"out\"} = %v, want at least the %d byte download", out, bigSize)
		}
	})
}
