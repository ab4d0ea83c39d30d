package interop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// The day-two tests: what an operator does to a running gateway after
// installing it (audit mode and roll-out rules, rotating a client's key,
// restarting), with real clients in namespaces.

// gatewayConf is what the day-two tests vary in gateway.toml; an empty
// field leaves its key out, so the default applies.
type gatewayConf struct {
	enforce  string // "enforce" or "audit"
	stateDir string // where the gateway keeps what outlives a restart
	drain    string // [limits] drain
}

// writeGatewayConf replaces the gateway.toml that writeSite wrote with one
// for the same site, key, listen address and audit log, plus an admin
// socket for `wardgate reload` and conf's keys (top-level keys and the
// drain, which writeSite's extra text cannot set). It returns the path.
func writeGatewayConf(t testing.TB, s *site, conf gatewayConf) string {
	t.Helper()
	var top, limits string
	if conf.enforce != "" {
		top += fmt.Sprintf("enforce = %q\n", conf.enforce)
	}
	if conf.stateDir != "" {
		top += fmt.Sprintf("state_dir = %q\n", conf.stateDir)
	}
	if conf.drain != "" {
		limits = fmt.Sprintf("\n[limits]\ndrain = %q\n", conf.drain)
	}
	text := fmt.Sprintf(`site = "leeds"
policy = "policy.toml"
private_key_file = "leeds.key"
listen = "127.0.0.1:%d"
%s
[log]
audit = "audit.log"
level = "debug"

[admin]
socket = "admin.sock"
%s`, s.port, top, limits)
	path := filepath.Join(s.dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ehrPolicy is leedsPolicy with the service ehr on the web backend, which
// only group clinical (alice) may reach: bob has no rule for it.
func ehrPolicy(gwPub, alicePub, bobPub string, webPort int) string {
	return leedsPolicy(gwPub, alicePub, bobPub) + fmt.Sprintf(`
[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%d"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]
`, webPort)
}

// eventsAfter returns the audit events after the first mark of them.
func eventsAfter(t testing.TB, gw *gatewayProc, mark int) []map[string]any {
	t.Helper()
	evs := gw.events(t)
	if len(evs) < mark {
		return nil
	}
	return evs[mark:]
}

// waitEventAfter is gw.waitEvent among the events after the first mark.
func waitEventAfter(t testing.TB, gw *gatewayProc, mark int, want map[string]any) map[string]any {
	t.Helper()
	var found map[string]any
	testwait.Until(t, 5*time.Second, fmt.Sprintf("audit event %v", want), func() bool {
		for _, ev := range eventsAfter(t, gw, mark) {
			if matches(ev, want) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// resolveVia makes server the resolver of programs in n that resolve
// names through libc (curl): `ip netns exec` binds
// /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
func resolveVia(t testing.TB, n *netns, server string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := "nameserver " + server + "\noptions timeout:2 attempts:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDayTwoAuditDNS: DNS follows the audit trail of flows. Where a flow
// would be let through as flow.audit (the gateway in audit mode, or only a
// deny rule with audit = true in the way), the service's name resolves
// too, logged as dns.audit with the reason enforcement would give, and
// curl by that name works; where enforcement hides the service, the name
// does not exist and nothing is logged as audit. One gateway, reloaded
// into each case.
func TestDayTwoAuditDNS(t *testing.T) {
	requireInterop(t, "dig", "curl")
	be := startBackends(t)
	gwKeys, alice, bob := newKeypair(t), newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	base := ehrPolicy(gwKeys.pub, alice.pub, bob.pub, be.web)
	s := writeSite(t, "leeds", gwKeys, port, base, "")
	writeGatewayConf(t, s, gatewayConf{drain: "1s"})
	gw := startGateway(t, s.dir, port)
	b := newClient(t, "bob", "100.80.1.11", bob, gwKeys.pub, port)
	resolveVia(t, b.netns, "100.80.0.1")
	const name = "ehr.test.internal"
	testwait.Until(t, 20*time.Second, "bob's first DNS answer through the tunnel", func() bool {
		_, err := tryDig(b, name)
		return err == nil
	})

	// denyBob grants group admin (bob) ehr and takes it from bob again
	// with a deny rule, enforcing or in roll-out.
	denyBob := func(audit bool) string {
		return fmt.Sprintf(`
[[rule]]
name = "admin-ehr"
from = ["group:admin"]
to = ["ehr"]

[[rule]]
name = "ehr-rollout"
action = "deny"
from = ["bob"]
to = ["ehr"]
audit = %v
`, audit)
	}
	url := fmt.Sprintf("http://%s:%d/", name, be.web)
	cases := []struct {
		name    string
		enforce string
		rules   string // added to the base policy
		// The reason and rule of dns.audit and flow.audit; reason ""
		// when the name must stay hidden.
		reason, rule string
	}{
		{"audit mode, no rule", "audit", "", "no-rule", ""},
		{"enforcing, deny rule in roll-out", "enforce", denyBob(true), "deny-rule", "ehr-rollout"},
		{"enforcing, no rule", "enforce", "", "", ""},
		{"enforcing, enforcing deny rule", "enforce", denyBob(false), "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeGatewayConf(t, s, gatewayConf{enforce: c.enforce, drain: "1s"})
			reload(t, gw, base+c.rules)
			mark := len(gw.events(t))
			r := dig(t, b, name)
			if c.reason == "" {
				r.expect(t, "bob "+name, "NXDOMAIN")
				if out, code := curlExit(t, b, url); code != 6 {
					t.Errorf("curl %s: exit %d %q, want 6 (could not resolve)", url, code, out)
				}
				// dig's query and libc's for curl, both logged as plain
				// queries, none as audit.
				testwait.Until(t, 5*time.Second, "dns.query of dig's and curl's lookups", func() bool {
					n := 0
					for _, ev := range eventsAfter(t, gw, mark) {
						if matches(ev, map[string]any{"event": "dns.query", "identity": "bob", "qname": name, "qtype": "A", "rcode": "NXDOMAIN"}) {
							n++
						}
					}
					return n >= 2
				})
				for _, ev := range eventsAfter(t, gw, mark) {
					if ev["event"] == "dns.audit" || ev["event"] == "flow.audit" {
						t.Errorf("enforcing gateway logged %v", ev)
					}
				}
				return
			}
			r.expect(t, "bob "+name, "NOERROR", "A 100.81.0.10")
			ev := waitEventAfter(t, gw, mark, map[string]any{"event": "dns.audit", "identity": "bob", "site": "leeds", "qname": name, "qtype": "A", "rcode": "NOERROR"})
			if rule, _ := ev["rule"].(string); ev["reason"] != c.reason || rule != c.rule {
				t.Errorf("dns.audit reason %v rule %q, want %s %q: %v", ev["reason"], rule, c.reason, c.rule, ev)
			}
			if out, code := curlExit(t, b, url); code != 0 || out != "hello from ehr\n" {
				t.Fatalf("curl %s: exit %d %q, want the page", url, code, out)
			}
			ev = waitEventAfter(t, gw, mark, map[string]any{"event": "flow.audit", "identity": "bob", "service": "ehr", "proto": "tcp"})
			if rule, _ := ev["rule"].(string); ev["reason"] != c.reason || rule != c.rule {
				t.Errorf("flow.audit reason %v rule %q, want %s %q: %v", ev["reason"], rule, c.reason, c.rule, ev)
			}
		})
	}
}

// confClient is a standard client set up from a config that `wardgate
// peer add` or `peer rotate` wrote, through `wg-quick strip` and `wg
// setconf`. It returns the client and the stripped file.
func confClient(t testing.TB, confFile string) (*client, string) {
	t.Helper()
	conf, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	stripped := filepath.Join(t.TempDir(), "stripped.conf")
	if err := os.WriteFile(stripped, []byte(run(t, "wg-quick", "strip", confFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	return newConfClient(t, stripped, confValues(string(conf), "Address"), confValues(string(conf), "AllowedIPs")), stripped
}

// TestDayTwoPeerRotate: a client enrolled with `wardgate peer add` works;
// after `wardgate peer rotate` and a reload its old key is refused at once
// (its session is dead, and a fresh handshake with the old config is not
// answered), and a client set up from the rotated config works.
func TestDayTwoPeerRotate(t *testing.T) {
	requireInterop(t, "curl", "wg-quick")
	be := startBackends(t)
	gwKeys, alice := newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	policy := fmt.Sprintf(`
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
endpoint = "127.0.0.1:%d"

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

[[rule]]
name = "desks-web"
from = ["group:desk"]
to = ["web"]
`, gwKeys.pub, port, alice.pub, be.web)
	s := writeSite(t, "leeds", gwKeys, port, policy, "")
	cfg := writeGatewayConf(t, s, gatewayConf{drain: "1s"})
	gw := startGateway(t, s.dir, port)
	// The peer commands edit policy.toml; reload applies it as it is.
	applyPolicy := func() {
		t.Helper()
		if code, out, errOut := wardgateCLI(t, "reload", "-c", cfg); code != 0 {
			t.Fatalf("wardgate reload: exit %d\n%s%s", code, out, errOut)
		}
	}
	dir := t.TempDir()
	oldConf, newConf := filepath.Join(dir, "desk-1.conf"), filepath.Join(dir, "desk-1-rotated.conf")
	web := fmt.Sprintf("http://100.81.0.10:%d/", be.web)
	reaches := func(c *client) bool {
		out, err := c.exec(5*time.Second, "curl", "-sS", "--max-time", "2", web)
		return err == nil && out == "hello from ehr\n"
	}

	if code, out, errOut := wardgateCLI(t, "peer", "add", "-c", cfg, "desk-1", "--groups", "desk", "-o", oldConf); code != 0 {
		t.Fatalf("peer add: exit %d\n%s%s", code, out, errOut)
	}
	applyPolicy()
	old, oldStripped := confClient(t, oldConf)
	testwait.Until(t, 15*time.Second, "desk-1 (first key) to reach web", func() bool { return reaches(old) })

	if code, out, errOut := wardgateCLI(t, "peer", "rotate", "-c", cfg, "desk-1", "-o", newConf); code != 0 {
		t.Fatalf("peer rotate: exit %d\n%s%s", code, out, errOut)
	}
	oldText, _ := os.ReadFile(oldConf)
	newText, _ := os.ReadFile(newConf)
	if o, n := confValues(string(oldText), "PrivateKey"), confValues(string(newText), "PrivateKey"); len(n) != 1 || o[0] == n[0] {
		t.Fatalf("rotated config's PrivateKey %v, old %v: want a new key", n, o)
	}
	if o, n := confValues(string(oldText), "Address"), confValues(string(newText), "Address"); strings.Join(o, ",") != strings.Join(n, ",") {
		t.Errorf("rotated config's Address %v, old %v: want it kept", n, o)
	}
	applyPolicy()
	mark := len(gw.events(t))

	// The old key's session went with its peer.
	start := time.Now()
	if out, err := old.exec(10*time.Second, "curl", "-sS", "--max-time", "3", web); err == nil {
		t.Fatalf("the old key still reaches web after rotate and reload: %q", out)
	}
	t.Logf("old key's curl failed after %v", time.Since(start).Round(time.Millisecond))

	// A fresh start with the old config: its handshake is not answered.
	run(t, "ip", "netns", "exec", old.name, "wg", "setconf", old.dev, oldStripped)
	if out, err := old.exec(10*time.Second, "curl", "-sS", "--max-time", "3", web); err == nil {
		t.Fatalf("the old config, set up afresh, reaches web: %q", out)
	}
	if hs := run(t, "ip", "netns", "exec", old.name, "wg", "show", old.dev, "latest-handshakes"); !strings.HasSuffix(strings.TrimSpace(hs), "\t0") {
		t.Errorf("the old key completed a handshake after rotate and reload: %q", hs)
	}

	rotated, _ := confClient(t, newConf)
	testwait.Until(t, 15*time.Second, "desk-1 (rotated key) to reach web", func() bool { return reaches(rotated) })
	waitEventAfter(t, gw, mark, map[string]any{"event": "flow.allow", "identity": "desk-1", "service": "web", "rule": "desks-web"})
	for _, ev := range eventsAfter(t, gw, mark) {
		if ev["event"] == "flow.allow" && ev["identity"] == "desk-1" && ev["src"] != nil && !strings.HasPrefix(fmt.Sprint(ev["src"]), "100.80.0.2:") {
			t.Errorf("desk-1's flow from %v, want its unchanged address 100.80.0.2", ev["src"])
		}
	}
}

// holdFlow opens one TCP connection from c to addr through the tunnel and
// keeps it open, idle, until the test ends.
func holdFlow(t testing.TB, c *client, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.cmd(ctx, os.Args[0], "-test.run=^$", addr+",1")
	cmd.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER=hold")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "held 1\n" {
		t.Fatalf("holding a flow to %s: %q", addr, line)
	}
}

// noKeepalive turns c's PersistentKeepalive off: after a gateway restart
// such a client sends nothing until it has something to send.
func noKeepalive(t testing.TB, c *client, gwPub string) {
	t.Helper()
	run(t, "ip", "netns", "exec", c.name, "wg", "set", c.dev, "peer", gwPub, "persistent-keepalive", "off")
	if out := run(t, "ip", "netns", "exec", c.name, "wg", "show", c.dev, "persistent-keepalive"); !strings.HasSuffix(strings.TrimSpace(out), "\toff") {
		t.Fatalf("persistent-keepalive still on: %q", out)
	}
}

// TestDayTwoRestartClientBack: a restarted gateway gets its clients back
// by itself. A client with a working session and no PersistentKeepalive
// still holds the old process's session keys, which the new process does
// not know; the new gateway must handshake with it (to the endpoint it
// kept in its state directory) so that the client's next connection works
// within 3 s of the gateway reporting it is running, with nothing done on
// the client. Without that the client only notices after wireguard-go's
// own timeout (keepalive 10 s + rekey 5 s).
func TestDayTwoRestartClientBack(t *testing.T) {
	requireInterop(t, "curl")
	be := startBackends(t)
	web := fmt.Sprintf("http://100.81.0.10:%d/", be.web)
	for _, tc := range []struct{ name, stateDir string }{
		{"state_dir set", "state"},
		{"state_dir default", ""}, // state/ beside gateway.toml
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The default is systemd's $STATE_DIRECTORY when set: not here.
			t.Setenv("STATE_DIRECTORY", "")
			gwKeys, alice, bob := newKeypair(t), newKeypair(t), newKeypair(t)
			port := freeUDPPort(t)
			s := writeSite(t, "leeds", gwKeys, port, ehrPolicy(gwKeys.pub, alice.pub, bob.pub, be.web), "")
			writeGatewayConf(t, s, gatewayConf{stateDir: tc.stateDir, drain: "1s"})
			gw := startGateway(t, s.dir, port)
			a := newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port)
			noKeepalive(t, a, gwKeys.pub)
			testwait.Until(t, 15*time.Second, "alice's working session", func() bool {
				out, err := a.exec(5*time.Second, "curl", "-sS", "--max-time", "2", web)
				return err == nil && out == "hello from ehr\n"
			})

			gw.stop(t)
			if _, err := os.Stat(filepath.Join(s.dir, "state", "peers.json")); err != nil {
				t.Errorf("after the stop, no peers' endpoints in the state directory: %v", err)
			}
			startGateway(t, s.dir, port)
			running := time.Now()
			var back time.Duration
			attempts := 0
			testwait.Until(t, 20*time.Second, "alice's first curl through the restarted gateway", func() bool {
				attempts++
				out, err := a.exec(5*time.Second, "curl", "-sS", "--connect-timeout", "0.5", "--max-time", "2", web)
				back = time.Since(running)
				return err == nil && out == "hello from ehr\n"
			})
			t.Logf("client back %v after the restarted gateway reported running (%d curl attempts, 0.5 s connect timeout each)", back.Round(time.Millisecond), attempts)
			if back >= 3*time.Second {
				t.Errorf("client back after %v, want under 3 s", back.Round(time.Millisecond))
			}
		})
	}
}

// TestDayTwoRestartCost measures what stopping a gateway costs with one
// live (idle) flow: SIGTERM to exit takes the drain, no more, and every
// flow's end is logged.
func TestDayTwoRestartCost(t *testing.T) {
	requireInterop(t, "curl")
	be := startBackends(t)
	for _, tc := range []struct {
		drain string        // "" leaves the key out
		want  time.Duration // the drain in effect
	}{
		{"", 10 * time.Second},
		{"1s", time.Second},
	} {
		name := "drain " + tc.drain
		if tc.drain == "" {
			name = "drain default"
		}
		t.Run(name, func(t *testing.T) {
			gwKeys, alice, bob := newKeypair(t), newKeypair(t), newKeypair(t)
			port := freeUDPPort(t)
			s := writeSite(t, "leeds", gwKeys, port, ehrPolicy(gwKeys.pub, alice.pub, bob.pub, be.web), "")
			writeGatewayConf(t, s, gatewayConf{drain: tc.drain})
			gw := startGateway(t, s.dir, port)
			a := newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port)
			testwait.Until(t, 15*time.Second, "alice's working session", func() bool {
				_, err := a.exec(5*time.Second, "curl", "-sS", "--max-time", "2", "-o", "/dev/null", fmt.Sprintf("http://100.81.0.10:%d/", be.web))
				return err == nil
			})
			holdFlow(t, a, fmt.Sprintf("100.81.0.10:%d", be.web))

			start := time.Now()
			gw.stop(t)
			took := time.Since(start)
			t.Logf("SIGTERM to exit with one live flow, %s (%v): %v", name, tc.want, took.Round(time.Millisecond))
			if took < tc.want-100*time.Millisecond || took > tc.want+3*time.Second {
				t.Errorf("SIGTERM to exit took %v, want the drain of %v (and at most 3 s more)", took.Round(time.Millisecond), tc.want)
			}
			allows, ends := 0, 0
			for _, ev := range gw.events(t) {
				if ev["identity"] != "alice" {
					continue
				}
				switch ev["event"] {
				case "flow.allow":
					allows++
				case "flow.end":
					ends++
				}
			}
			if allows < 2 || ends != allows {
				t.Errorf("after the stop: %d flow.allow and %d flow.end for alice, want every flow (at least the curl and the held one) ended in the log", allows, ends)
			}
		})
	}
}
