package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// quarantineExtra keeps the UDP echo service (the rig's "patch server")
// reachable in quarantine.
const quarantineExtra = "\n[quarantine]\nallow = [\"echo\"]\n"

func newQuarantineRig(t *testing.T, dir string) *e2eRig {
	r := &e2eRig{be: startTestBackends(t), gwKey: newTestKey(t), aliceKey: newTestKey(t), bobKey: newTestKey(t)}
	pol := sprintfPolicy(r.gwKey, r.aliceKey, r.bobKey, r.be) + quarantineExtra
	r.tg = startTestGatewayAt(t, memnet.NewSwitch(), r.gwKey, "leeds", 0, dir, pol, "[limits]\ndrain = \"1s\"\nudp_idle = \"1s\"\n")
	r.alice = r.tg.client(t, r.aliceKey, "100.80.1.10")
	r.bob = r.tg.client(t, r.bobKey, "100.80.1.11")
	return r
}

// askDNS asks the gateway's DNS for name's A record as c.
func askDNS(t *testing.T, c *wgclient.Client, name string) *dns.Msg {
	t.Helper()
	conn, err := c.DialUDP(netip.MustParseAddrPort("100.80.0.1:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dc := &dns.Conn{Conn: conn}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if err := dc.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		t.Fatalf("dns %s: %v", name, err)
	}
	return r
}

// greet dials vip:port as c and reads what the backend says first: "other"
// from the rig's other backend.
func greet(c *wgclient.Client, vip string, port uint16) (string, error) {
	conn, err := dialVIP(c, vip, port)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(conn)
	return string(got), err
}

// TestQuarantineEndToEnd: a quarantined client's live TCP flow is reset at
// once, its new flows are refused, its DNS hides all but the services of
// [quarantine] allow, which it still reaches; another identity on the same
// gateway works on; release restores everything.
func TestQuarantineEndToEnd(t *testing.T) {
	r := newQuarantineRig(t, t.TempDir())
	g := r.tg.gw
	echoVIP := netip.AddrPortFrom(netip.MustParseAddr("100.81.0.13"), r.be.udpEcho.Port())
	held, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	testwait.Until(t, 5*time.Second, "alice's held flow", func() bool { return countFlows(g, "alice") == 1 })

	start := time.Now()
	if _, already, err := g.Quarantine("alice", "EDR alert 4711", "uid 0 (root), pid 1 (test)"); err != nil || already {
		t.Fatalf("quarantine: %v, already %v", err, already)
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the live flow outlived the quarantine: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("live flow reset %v after the quarantine; want within a second", d)
	}
	ev := r.tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "service": "ehr"})
	if ev["reason"] != "quarantined" {
		t.Errorf("flow.revoked: %v", ev)
	}
	ev = r.tg.audit.waitEvent(t, map[string]any{"event": "identity.quarantine", "identity": "alice"})
	if ev["reason"] != "EDR alert 4711" || ev["by"] != "uid 0 (root), pid 1 (test)" || ev["site"] != "leeds" {
		t.Errorf("identity.quarantine: %v", ev)
	}

	if got, err := greet(r.alice, "100.81.0.10", r.be.echo.Port()); err == nil && got != "" {
		t.Errorf("a quarantined identity opened a new flow: %q", got)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "ehr", "reason": "quarantined"})
	if err := udpEcho(r.alice, echoVIP); err != nil {
		t.Errorf("the service of [quarantine] allow: %v", err)
	}
	if m := askDNS(t, r.alice, "ehr.test.internal"); m.Rcode != dns.RcodeRefused {
		t.Errorf("quarantined alice ehr.test.internal: %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}
	if m := askDNS(t, r.alice, "echo.test.internal"); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("quarantined alice echo.test.internal: %v", m)
	}
	if got, err := greet(r.bob, "100.81.0.11", r.be.other.Port()); err != nil || got != "other" {
		t.Errorf("bob, not quarantined: %q %v", got, err)
	}
	if m := askDNS(t, r.bob, "payroll.test.internal"); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("bob payroll.test.internal: %v", m)
	}
	st := g.Status()
	if len(st.Quarantined) != 1 || st.Quarantined[0].Identity != "alice" || !st.Quarantined[0].InPolicy {
		t.Errorf("status quarantined: %+v", st.Quarantined)
	}
	if v := gaugeValue(t, g, "wardgate_quarantined"); v != 1 {
		t.Errorf("wardgate_quarantined = %v", v)
	}

	if _, err := g.Release("alice", "reimaged", "uid 0 (root)"); err != nil {
		t.Fatal(err)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "identity.release", "identity": "alice", "reason": "reimaged"})
	if m := askDNS(t, r.alice, "ehr.test.internal"); m.Rcode != dns.RcodeSuccess {
		t.Errorf("released alice ehr.test.internal: %s", dns.RcodeToString[m.Rcode])
	}
	c, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c.Write([]byte("hi"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(c); string(got) != "echo:hi" {
		t.Errorf("after release: %q %v", got, err)
	}
	c.Close()
	if v := gaugeValue(t, g, "wardgate_quarantined"); v != 0 {
		t.Errorf("wardgate_quarantined after release = %v", v)
	}
}

// gaugeValue reads one unlabelled gauge from g's registry.
func gaugeValue(t *testing.T, g *Gateway, name string) float64 {
	t.Helper()
	mfs, err := g.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestQuarantinePersists: the record is in the state directory, written
// atomically, and survives a restart and reloads, even one whose policy
// no longer has the identity.
func TestQuarantinePersists(t *testing.T) {
	dir := t.TempDir()
	r := newQuarantineRig(t, dir)
	if _, _, err := r.tg.gw.Quarantine("alice", "EDR alert 4711", "tester"); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	data, err := os.ReadFile(filepath.Join(stateDir, quarantineFile))
	if err != nil {
		t.Fatal(err)
	}
	var qs quarantineState
	if err := json.Unmarshal(data, &qs); err != nil || len(qs.Entries) != 1 || !qs.Entries[0].Active || qs.Entries[0].Reason != "EDR alert 4711" {
		t.Fatalf("state file: %s (%v)", data, err)
	}
	if strings.Contains(string(data), "in_policy") {
		t.Errorf("the state file says in_policy, which only the running policy knows:\n%s", data)
	}
	if left, _ := filepath.Glob(filepath.Join(stateDir, quarantineFile+".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, already, err := r.tg.gw.Quarantine("alice", "again", "tester"); err != nil || !already {
		t.Errorf("a second quarantine: %v, already %v", err, already)
	}
	r.tg.gw.Close()

	pol, _ := os.ReadFile(filepath.Join(dir, "policy.toml"))
	tg := startTestGatewayAt(t, memnet.NewSwitch(), r.gwKey, "leeds", 0, dir, string(pol), "[limits]\ndrain = \"1s\"\n")
	if q := tg.gw.Quarantines(); len(q) != 1 || q[0].Identity != "alice" || q[0].Reason != "EDR alert 4711" {
		t.Fatalf("after restart: %+v", q)
	}
	if _, err := tg.gw.Reload(); err != nil || !tg.gw.quar.has("alice") {
		t.Fatalf("after reload: %v, quarantined %v", err, tg.gw.quar.has("alice"))
	}
	// A policy deploy that drops alice keeps her record: she is still
	// quarantined if she comes back.
	without := strings.Replace(string(pol), "[[identity]]\nname = \"alice\"", "[[identity]]\nname = \"alice-gone\"", 1)
	without = strings.Replace(without, r.aliceKey.pubB64(), newTestKey(t).pubB64(), 1)
	os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(without), 0o644)
	if _, err := tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if q := tg.gw.Quarantines(); len(q) != 1 || q[0].InPolicy {
		t.Errorf("after a reload without alice: %+v", q)
	}
	tg.gw.Close()

	os.WriteFile(filepath.Join(stateDir, quarantineFile), []byte("{not json"), 0o640)
	cfg, err := LoadConfig(filepath.Join(dir, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := Start(cfg, Options{Bind: memnet.NewSwitch().Bind(netip.MustParseAddr("127.0.0.1")), Audit: NewAuditLogger(io.Discard), Logger: slogToTest(t)}); err == nil {
		g.Close()
		t.Fatal("a gateway started with a damaged quarantine file (it would release everyone)")
	} else if !strings.Contains(err.Error(), quarantineFile) {
		t.Errorf("error does not name the file: %v", err)
	}
}

// TestQuarantineBadInput: refused with a clear message, and nothing done:
// no record, no state file, no audit event.
func TestQuarantineBadInput(t *testing.T) {
	dir := t.TempDir()
	r := newQuarantineRig(t, dir)
	g := r.tg.gw
	for _, tc := range []struct{ name, reason, want string }{
		{"alic", "EDR alert", `unknown identity "alic" in ` + filepath.Join(dir, "policy.toml") + ` (did you mean "alice"?)`},
		{"leeds", "EDR alert", `"leeds" is a site gateway, not an identity`},
		{"alice", "  ", "a reason is required"},
		{"alice", "two\nlines", "control character"},
	} {
		_, _, err := g.Quarantine(tc.name, tc.reason, "tester")
		var qe *QuarantineError
		if !errors.As(err, &qe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("quarantine %q %q: %v, want %q", tc.name, tc.reason, err, tc.want)
		}
	}
	if _, err := g.Release("alice", "", "tester"); err == nil || !strings.Contains(err.Error(), "not quarantined") {
		t.Errorf("release of an identity not quarantined: %v", err)
	}
	if _, err := g.Release("alic", "", "tester"); err == nil || !strings.Contains(err.Error(), `unknown identity "alic" in `+filepath.Join(dir, "policy.toml")+` (did you mean "alice"?)`) {
		t.Errorf("release of a typo: %v", err)
	}
	// The state directory cannot be written: the quarantine fails whole.
	stateDir := filepath.Join(dir, "state")
	os.RemoveAll(stateDir)
	os.WriteFile(stateDir, nil, 0o600)
	if _, _, err := g.Quarantine("alice", "EDR alert", "tester"); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("quarantine with an unwritable state directory: %v", err)
	}
	if g.quar.has("alice") || len(g.Quarantines()) != 0 {
		t.Error("a refused quarantine left alice quarantined")
	}
	for _, ev := range r.tg.audit.events(t) {
		if strings.HasPrefix(ev["event"].(string), "identity.") {
			t.Errorf("a refused change was logged: %v", ev)
		}
	}
}
