package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// consolePolicy is a small trust: two clients with WireGuard clients of
// their own (alice, clinical; bob, it, who is granted the console), a few
// identities that only appear on the map, and rules of every kind.
const consolePolicy = `
groups = ["clinical", "radiology", "it", "medical-device"]

[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = "%[1]s"
address = "100.80.0.1"

[[identity]]
name = "alice"
key = "%[2]s"
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[identity]]
name = "bob"
key = "%[3]s"
address = "100.80.1.11"
site = "leeds"
groups = ["it"]

[[identity]]
name = "dr-khan-laptop"
key = "%[5]s"
address = "100.80.1.12"
site = "leeds"
groups = ["clinical", "radiology"]

[[identity]]
name = "agency-nurse-3"
key = "%[6]s"
address = "100.80.1.13"
site = "leeds"
groups = ["clinical"]

[[identity]]
name = "mri-3"
source = "192.168.20.13/32"
site = "leeds"
groups = ["medical-device"]

[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["%[4]s"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:9"]

[[service]]
name = "pacs"
site = "leeds"
vip = "100.81.0.12"
endpoints = ["127.0.0.1:104", "127.0.0.1:4000-4010/udp"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]

[[rule]]
name = "radiology-pacs"
from = ["group:radiology", "mri-3"]
to = ["pacs"]
when = "mon-fri 07:00-20:00 Europe/London"

[[rule]]
name = "cover-ward-7"
from = ["agency-nurse-3"]
to = ["pacs"]
ports = ["104/tcp"]
expires = "%[7]s"
reason = "on-call cover"

[[rule]]
name = "no-devices-on-ehr"
action = "deny"
audit = true
from = ["group:medical-device"]
to = ["ehr"]

[[rule]]
name = "it-console"
from = ["group:it"]
to = ["console"]
`

// consoleRig is a gateway with the console policy, alice and bob connected.
type consoleRig struct {
	tg         *testGateway
	alice, bob *wgclient.Client
	be         testBackends
	policy     string
}

// newConsoleRig starts it; extra goes into gateway.toml.
func newConsoleRig(t *testing.T, extra string) *consoleRig {
	t.Helper()
	return newConsoleRigWith(t, startTestBackends(t), extra+"\n[limits]\ndrain = \"1s\"\n")
}

func newConsoleRigWith(t *testing.T, be testBackends, extra string) *consoleRig {
	t.Helper()
	gw, alice, bob := newTestKey(t), newTestKey(t), newTestKey(t)
	expires := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339) // a grant with hours left
	pol := fmt.Sprintf(consolePolicy, gw.pubB64(), alice.pubB64(), bob.pubB64(), be.echo, newTestKey(t).pubB64(), newTestKey(t).pubB64(), expires)
	r := &consoleRig{be: be, policy: pol}
	r.tg = startTestGateway(t, memnet.NewSwitch(), gw, "leeds", pol, extra)
	r.alice = r.tg.client(t, alice, "100.80.1.10")
	r.bob = r.tg.client(t, bob, "100.80.1.11")
	return r
}

// consoleAddr is the console at the gateway's overlay address.
const consoleAddr = "100.80.0.1:80"

// httpVia is an HTTP client whose connections go through c's tunnel.
func httpVia(c *wgclient.Client) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return c.DialContext(ctx, "tcp4", addr) },
	}}
}

// The console is reached on the overlay only with a rule that names it,
// and every attempt is audited like any flow; audit mode does not open it.
func TestConsoleOnOverlay(t *testing.T) {
	for _, mode := range []string{"enforce", "audit"} {
		t.Run(mode, func(t *testing.T) {
			r := newConsoleRig(t, fmt.Sprintf("enforce = %q\n", mode))
			resp, err := httpVia(r.bob).Get("http://" + consoleAddr + "/")
			if err != nil {
				t.Fatalf("bob, granted the console: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "you are <b>bob</b>") {
				t.Fatalf("bob's overview: %d %s", resp.StatusCode, body)
			}
			if resp.Header.Get("Content-Security-Policy") == "" {
				t.Error("no Content-Security-Policy on the overlay")
			}
			r.tg.audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "bob", "service": "console", "rule": "it-console", "port": 80})

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := r.alice.DialContext(ctx, "tcp4", consoleAddr); err == nil {
				c.Close()
				t.Fatal("alice, without a console rule, reached the console")
			}
			r.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "console", "reason": "no-rule"})
		})
	}
}

// The live page's event stream, read over the overlay, carries a new flow
// as it opens.
func TestConsoleEventsOverOverlay(t *testing.T) {
	r := newConsoleRig(t, "")
	resp, err := httpVia(r.bob).Get("http://" + consoleAddr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	c, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("event stream ended")
			}
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"identity":"alice"`) && strings.Contains(l, `"service":"ehr"`) {
				return
			}
		case <-deadline:
			t.Fatal("alice's flow did not appear on the event stream")
		}
	}
}

// A reload that takes the console rule away ends the pages already open,
// as it ends any flow it no longer allows.
func TestConsoleRevokedOnReload(t *testing.T) {
	r := newConsoleRig(t, "")
	resp, err := httpVia(r.bob).Get("http://" + consoleAddr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	text := strings.Replace(r.policy, `to = ["console"]`, `to = ["ehr"]`, 1)
	if err := os.WriteFile(filepath.Join(r.tg.dir, "policy.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("bob's console page is still streaming after his rule was removed")
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "bob", "service": "console", "reason": "no-rule"})
}

// [admin] web serves the console on loopback, and only there.
func TestConsoleAdminWeb(t *testing.T) {
	r := newConsoleRig(t, "[admin]\nweb = \"127.0.0.1:0\"\n")
	addr := r.tg.gw.WebAddr()
	resp, err := http.Get("http://" + addr.String() + "/grants")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "cover-ward-7") || !strings.Contains(string(body), "local console") {
		t.Errorf("loopback grants page: %s", body)
	}

	dir := t.TempDir()
	gw := filepath.Join(dir, "gateway.toml")
	os.WriteFile(gw, []byte("site = \"leeds\"\npolicy = \"p.toml\"\nprivate_key_file = \"k\"\n\n[admin]\nweb = \"0.0.0.0:9587\"\n"), 0o644)
	if _, err := LoadConfig(gw); err == nil || !strings.Contains(err.Error(), gw+":6:") || !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("a console on 0.0.0.0: %v, want %s:6: ... loopback only", err, gw)
	}
}

// The grants page proposes rules, as wardgate suggest does, from the
// denials the gateway has seen: alice refused payroll becomes a proposed
// rule with its [[test]].
func TestConsoleProposesFromDenials(t *testing.T) {
	r := newConsoleRig(t, "[admin]\nweb = \"127.0.0.1:0\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := r.alice.DialContext(ctx, "tcp4", "100.81.0.11:9"); err == nil {
		c.Close()
		t.Fatal("alice reached payroll, which no rule grants her")
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "payroll"})
	resp, err := http.Get("http://" + r.tg.gw.WebAddr().String() + "/grants")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"[[rule]]", `from = [&#34;alice&#34;]`, `to = [&#34;payroll&#34;]`, "[[test]]"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("grants page lacks %s:\n%s", want, body)
		}
	}
}

// console.DOMAIN resolves to the gateway's own address for bob, whom the
// policy grants the console, and does not exist for alice.
func TestConsoleDNSName(t *testing.T) {
	r := newConsoleRig(t, "")
	if m := askDNS(t, r.bob, "console.test.internal"); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 ||
		m.Answer[0].(*dns.A).A.String() != "100.80.0.1" {
		t.Errorf("bob's answer for console.test.internal: %v", m)
	}
	if m := askDNS(t, r.alice, "console.test.internal"); m.Rcode != dns.RcodeNameError {
		t.Errorf("alice's answer for console.test.internal: %v, want NXDOMAIN", m)
	}
}

// The overview shows who is quarantined, since when, by whom and why.
func TestConsoleOverviewShowsQuarantine(t *testing.T) {
	r := newConsoleRig(t, "[admin]\nweb = \"127.0.0.1:0\"\n")
	page := func() string {
		resp, err := http.Get("http://" + r.tg.gw.WebAddr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if body := page(); !strings.Contains(body, "No identity is quarantined.") {
		t.Errorf("overview before the quarantine:\n%s", body)
	}
	if _, _, err := r.tg.gw.Quarantine("alice", "EDR alert <4711>", "uid 994 (edr)"); err != nil {
		t.Fatal(err)
	}
	body := page()
	for _, want := range []string{`<td class="deny">alice</td>`, "uid 994 (edr)", "EDR alert &lt;4711&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s:\n%s", want, body)
		}
	}
}

// A gateway closed while a console page streams to a client ends the
// stream at once (not after the drain time) and leaves no goroutine behind.
func TestConsoleCloseLeavesNoGoroutines(t *testing.T) {
	be := startTestBackends(t)
	baseline := runtime.NumGoroutine()
	r := newConsoleRigWith(t, be, "[limits]\ndrain = \"30s\"\n")
	client := httpVia(r.bob)
	resp, err := client.Get("http://" + consoleAddr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.tg.gw.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing took %v: the open console page held the drain", d)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	r.alice.Close()
	r.bob.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A LAN listener cannot front the console: it has no address to forward to.
func TestConsoleNotBehindListener(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t).pubB64()
	pol := fmt.Sprintf(consolePolicy, k, newTestKey(t).pubB64(), newTestKey(t).pubB64(), "127.0.0.1:443", newTestKey(t).pubB64(), newTestKey(t).pubB64(), "2099-01-01T00:00:00Z")
	os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(pol), 0o644)
	gw := filepath.Join(dir, "gateway.toml")
	os.WriteFile(gw, []byte("site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"k\"\n[[listener]]\nlisten = \"127.0.0.1:8080\"\nservice = \"console\"\n"), 0o644)
	c, err := LoadConfig(gw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadPolicy(); err == nil || !strings.Contains(err.Error(), gw+":6:1: listener 1: the console is served on the overlay") {
		t.Errorf("a listener for the console: %v", err)
	}
}
