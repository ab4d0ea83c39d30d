package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
	"github.com/wardgate/wardgate/policy"
)

// reloadRig is one gateway with alice and bob connected.
type reloadRig struct {
	tg         *testGateway
	be         testBackends
	keys       [3]testKey // gateway, alice, bob
	alice, bob *wgclient.Client
}

func newReloadRig(t *testing.T) *reloadRig {
	r := &reloadRig{be: startTestBackends(t), keys: [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}}
	r.tg = startTestGateway(t, memnet.NewSwitch(), r.keys[0], "leeds", r.policy(""), "[limits]\ndrain = \"1s\"\n")
	r.alice = r.tg.client(t, r.keys[1], "100.80.1.10")
	r.bob = r.tg.client(t, r.keys[2], "100.80.1.11")
	return r
}

// policy is e2ePolicy with extra text appended.
func (r *reloadRig) policy(extra string) string {
	return sprintfPolicy(r.keys[0], r.keys[1], r.keys[2], r.be) + extra
}

func (r *reloadRig) write(t testing.TB, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.tg.dir, "policy.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// roundTrip sends a few bytes to the echo backend and checks the answer.
func (r *reloadRig) roundTrip(c *wgclient.Client) error {
	conn, err := dialVIP(c, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.Write([]byte("ping"))
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if string(got) != "echo:ping" {
		return fmt.Errorf("echo: %q", got)
	}
	return nil
}

func TestReloadBadFileChangesNothing(t *testing.T) {
	r := newReloadRig(t)
	before := r.tg.gw.Policy().Hash()
	r.write(t, r.policy("\n[[rule]]\nname = \"broken\"\nfrom = [\"group:nobody\"]\nto = [\"ehr\"]\n"))
	_, err := r.tg.gw.Reload()
	var le *policy.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "policy.toml:") || !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if got := r.tg.gw.Policy().Hash(); got != before {
		t.Fatalf("a bad file changed the policy: %s -> %s", before, got)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.error"})
	if err := r.roundTrip(r.alice); err != nil {
		t.Fatalf("traffic after a refused reload: %v", err)
	}
}

func TestReloadRevokesLiveFlows(t *testing.T) {
	r := newReloadRig(t)
	held, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	testwait.Until(t, 5*time.Second, "the held flow", func() bool { return countFlows(r.tg.gw, "alice") == 1 })
	bobHandshake := peerHandshake(r.tg.gw, "bob")

	// The new policy drops ehr from alice's rule and adds an identity.
	text := strings.Replace(r.policy(""), `to = ["ehr", "dead", "echo"]`, `to = ["dead", "echo"]`, 1)
	text += fmt.Sprintf("\n[[identity]]\nname = \"carol\"\nkey = %q\naddress = \"100.80.1.12\"\nsite = \"leeds\"\ngroups = [\"admin\"]\n", newTestKey(t).pubB64())
	r.write(t, text)
	start := time.Now()
	if _, err := r.tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = held.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the revoked flow is still open: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("revocation took %v", d)
	}
	if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "refused") {
		t.Errorf("want a reset, got %v", err)
	}
	ev := r.tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "service": "ehr"})
	if ev["reason"] != "no-rule" {
		t.Errorf("flow.revoked = %v", ev)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.end", "identity": "alice", "service": "ehr", "error": "revoked"})
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.reload", "hash": r.tg.gw.Policy().Hash()})
	if err := r.roundTrip(r.alice); err == nil {
		t.Error("a new flow to ehr is allowed after the reload")
	}
	if got := peerHandshake(r.tg.gw, "bob"); !got.Equal(bobHandshake) {
		t.Errorf("bob's WireGuard session was disturbed: handshake %v -> %v", bobHandshake, got)
	}
	if !hasPeer(r.tg.gw, "carol") {
		t.Error("the new identity is not a peer after reload")
	}
}

// TestReloadUnderTraffic alternates 200 good and bad reloads while alice
// keeps making flows that every good policy allows and holds one open.
func TestReloadUnderTraffic(t *testing.T) {
	r := newReloadRig(t)
	held, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	good := []string{r.policy(""), r.policy("\n[[rule]]\nname = \"bob-ehr\"\nfrom = [\"bob\"]\nto = [\"ehr\"]\n")}
	bad := r.policy("\n[[rule]]\nname = \"oops\"\nto = [\"no-such-service\"]\n")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	flows := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := r.roundTrip(r.alice)
			mu.Lock()
			flows++
			if err != nil {
				failures = append(failures, err)
			}
			mu.Unlock()
		}
	}()
	for i := range 200 {
		if i%2 == 0 {
			r.write(t, good[(i/2)%2])
			if _, err := r.tg.gw.Reload(); err != nil {
				t.Fatalf("good reload %d: %v", i, err)
			}
		} else {
			r.write(t, bad)
			if _, err := r.tg.gw.Reload(); err == nil {
				t.Fatalf("bad reload %d accepted", i)
			}
		}
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d flows failed across reloads; first: %v", len(failures), flows, failures[0])
	}
	if flows == 0 {
		t.Fatal("no traffic ran during the reloads")
	}
	held.Write([]byte("still here"))
	held.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(held)
	if err != nil || !bytes.Equal(got, []byte("echo:still here")) {
		t.Fatalf("the flow held across 200 reloads: %q, %v", got, err)
	}
	t.Logf("%d flows during 200 reloads", flows)
}

func peerHandshake(g *Gateway, name string) time.Time {
	for _, p := range g.Status().Peers {
		if p.Name == name {
			return p.LastHandshake
		}
	}
	return time.Time{}
}

func hasPeer(g *Gateway, name string) bool {
	for _, p := range g.Status().Peers {
		if p.Name == name {
			return true
		}
	}
	return false
}

// TestAuditMode: with enforce = "audit" a would-be denial passes and is
// logged as flow.audit; a deny rule with audit = true does the same in an
// enforcing gateway; flows with no service stay denied.
func TestAuditMode(t *testing.T) {
	r := &reloadRig{be: startTestBackends(t), keys: [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}}
	r.tg = startTestGateway(t, memnet.NewSwitch(), r.keys[0], "leeds", r.policy(""), "enforce = \"audit\"\n[limits]\ndrain = \"1s\"\n")
	bob := r.tg.client(t, r.keys[2], "100.80.1.11")
	if err := r.roundTrip(bob); err != nil { // bob has no rule for ehr
		t.Fatalf("audit mode denied a would-be denial: %v", err)
	}
	ev := r.tg.audit.waitEvent(t, map[string]any{"event": "flow.audit", "identity": "bob", "service": "ehr"})
	if ev["reason"] != "no-rule" {
		t.Errorf("flow.audit = %v", ev)
	}
	if st := r.tg.gw.Status(); st.Enforcing || st.Enforce != "audit" {
		t.Errorf("status says enforcing in audit mode: %+v", st)
	}
	rec := httptest.NewRecorder()
	r.tg.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "wardgate_enforcing 0") {
		t.Error("metrics do not say the gateway is not enforcing")
	}
	if _, err := dialVIP(bob, "100.81.0.99", 80); err == nil {
		t.Error("a flow to no service went through in audit mode")
	}

	// Back to enforcing, with a deny rule in roll-out against alice.
	r.alice = r.tg.client(t, r.keys[1], "100.80.1.10")
	r.write(t, r.policy("\n[[rule]]\nname = \"no-ehr-soon\"\naction = \"deny\"\naudit = true\nfrom = [\"alice\"]\nto = [\"ehr\"]\n"))
	gw := filepath.Join(r.tg.dir, "gateway.toml")
	text, _ := os.ReadFile(gw)
	os.WriteFile(gw, bytes.Replace(text, []byte("enforce = \"audit\"\n"), nil, 1), 0o644)
	if _, err := r.tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := r.roundTrip(r.alice); err != nil {
		t.Fatalf("an audit deny rule blocked: %v", err)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.audit", "identity": "alice", "rule": "no-ehr-soon", "reason": "deny-rule"})
	if err := r.roundTrip(bob); err == nil {
		t.Error("bob's would-be denial passes in an enforcing gateway")
	}
}

// TestEnforceChangesLeaveATrail: start and stop are audit events; turning
// enforcement off (and on) is config.enforce plus an enforce field on
// config.reload; a refused reload that asked for audit mode changes
// nothing, the enforce mode included.
func TestEnforceChangesLeaveATrail(t *testing.T) {
	r := newReloadRig(t)
	r.tg.audit.waitEvent(t, map[string]any{"event": "gateway.start", "site": "leeds", "enforce": "enforce", "hash": r.tg.gw.Policy().Hash()})
	gwFile := filepath.Join(r.tg.dir, "gateway.toml")
	orig, err := os.ReadFile(gwFile)
	if err != nil {
		t.Fatal(err)
	}
	setGateway := func(extra string) {
		if err := os.WriteFile(gwFile, append([]byte(extra), orig...), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Audit mode and a blocklist that does not exist: refused as a whole.
	setGateway("enforce = \"audit\"\n[dns]\nblocklists = [\"missing.txt\"]\n")
	if _, err := r.tg.gw.Reload(); err == nil {
		t.Fatal("a reload with a missing blocklist was accepted")
	}
	if st := r.tg.gw.Status(); !st.Enforcing {
		t.Fatal("a refused reload switched the gateway to audit mode")
	}
	if err := r.roundTrip(r.bob); err == nil { // bob has no rule for ehr
		t.Fatal("a would-be denial passed after a refused reload")
	}

	setGateway("enforce = \"audit\"\n")
	ch, err := r.tg.gw.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Enforce != "audit" || ch.PreviousEnforce != "enforce" || ch.PolicyHash != ch.PreviousHash {
		t.Errorf("changes %+v", ch)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.enforce", "enforce": "audit", "previous_enforce": "enforce"})
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.reload", "enforce": "audit"})

	setGateway("")
	r.write(t, r.policy(fmt.Sprintf("\n[[identity]]\nname = \"carol\"\nkey = %q\naddress = \"100.80.1.12\"\nsite = \"leeds\"\ngroups = [\"admin\"]\n", newTestKey(t).pubB64())))
	if ch, err = r.tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if ch.Enforce != "enforce" || len(ch.PeersAdded) != 1 || ch.PeersAdded[0] != "carol" || ch.PolicyHash == ch.PreviousHash {
		t.Errorf("changes %+v", ch)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.enforce", "enforce": "enforce", "previous_enforce": "audit"})

	r.tg.gw.Close()
	r.tg.audit.waitEvent(t, map[string]any{"event": "gateway.stop", "site": "leeds"})
}

// TestReloadRotatesTheGatewayKey: a new private_key_file is applied on
// reload when the policy names its public key for this site; a key the
// policy does not name is refused and changes nothing.
func TestReloadRotatesTheGatewayKey(t *testing.T) {
	r := newReloadRig(t)
	newKey := newTestKey(t)
	keyFile := filepath.Join(r.tg.dir, "gw.key")
	if err := os.WriteFile(keyFile, []byte(newKey.privB64()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := r.tg.gw.Reload()
	if err == nil || !strings.Contains(err.Error(), "private_key_file") || !strings.Contains(err.Error(), newKey.pubB64()) {
		t.Fatalf("a key the policy does not name: %v", err)
	}
	if err := r.roundTrip(r.alice); err != nil {
		t.Fatalf("traffic after the refused key: %v", err)
	}

	r.write(t, sprintfPolicy(newKey, r.keys[1], r.keys[2], r.be))
	ch, err := r.tg.gw.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !ch.KeyChanged {
		t.Errorf("changes %+v", ch)
	}
	r.tg.key = newKey
	alice := r.tg.client(t, r.keys[1], "100.80.1.10") // configured with the new public key
	// Its first initiation may come within WireGuard's 20 ms handshake
	// flood window of the old client's last one and be ignored; the client
	// then retries after its rekey timeout (5 s).
	testwait.Until(t, 15*time.Second, "a client with the gateway's new key", func() bool { return r.roundTrip(alice) == nil })
	r.tg.audit.waitEvent(t, map[string]any{"event": "config.reload", "key_changed": true})
}

func TestRestartOnlyNamesWhatAReloadLeaves(t *testing.T) {
	base := func() *Config {
		return &Config{Listen: "0.0.0.0:51820", DNS: DNSConfig{Upstream: []string{"127.0.0.1:53"}}, Limits: Defaults}
	}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(c *Config) {}, nil},
		{"blocklists are applied", func(c *Config) { c.DNS.Blocklists = []string{"x.txt"} }, nil},
		{"enforce is applied", func(c *Config) { c.Enforce = "audit" }, nil},
		{"upstreams are applied", func(c *Config) { c.DNS.Upstream = []string{"127.0.0.1:5353"} }, nil},
		{"the DNS rate", func(c *Config) { c.DNS.RatePerIdentity = 5 }, []string{"[dns] rate_per_identity"}},
		{"listen and limits", func(c *Config) { c.Listen = "127.0.0.1:51820"; c.Limits.TCPIdle = 1 }, []string{"listen", "[limits]"}},
		{"listeners", func(c *Config) { c.Listener = []ListenerConfig{{Listen: "127.0.0.1:1", Service: "x"}} }, []string{"[[listener]]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(c)
			if got := restartOnly(base(), c); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			keepRestartOnly(base(), c) // the new state's config: what is in force
			if got := restartOnly(base(), c); got != nil {
				t.Errorf("after keepRestartOnly, still %q", got)
			}
		})
	}
}
