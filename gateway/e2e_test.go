package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// TestEndToEnd runs userspace WireGuard clients against a real gateway:
// real wireguard-go devices, the real gVisor stack, real backend sockets.
func TestEndToEnd(t *testing.T) {

	t.Run("allowed TCP carries data both ways with half-close", func(t *testing.T) {
		rig := newE2ERig(t)
		c, err := dialVIP(rig.alice, "100.81.0.10", rig.be.echo.Port())
		if err != nil {
			t.Fatalf("dial ehr: %v", err)
		}
		defer c.Close()
		payload := make([]byte, 1<<20)
		rand.Read(payload)
		go func() {
			c.Write(payload)
			c.(interface{ CloseWrite() error }).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, append([]byte("echo:"), payload...)) {
			t.Fatalf("echo through the gateway differs: got %d bytes", len(got))
		}
		ev := rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "ehr"})
		want := map[string]any{"site": "leeds", "proto": "tcp", "port": rig.be.echo.Port(), "rule": "clinical-ehr",
			"dst": fmt.Sprintf("100.81.0.10:%d", rig.be.echo.Port())}
		for k, v := range want {
			if fmt.Sprint(ev[k]) != fmt.Sprint(v) {
				t.Errorf("flow.allow %s = %v, want %v", k, ev[k], v)
			}
		}
		if src := fmt.Sprint(ev["src"]); !strings.HasPrefix(src, "100.80.1.10:") {
			t.Errorf("flow.allow src = %s", src)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"])); err != nil {
			t.Errorf("flow.allow time: %v", err)
		}
		end := rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.end", "identity": "alice", "service": "ehr"})
		if end["bytes_in"].(float64) != float64(len(payload)) || end["bytes_out"].(float64) != float64(len(payload)+5) {
			t.Errorf("flow.end bytes_in %v bytes_out %v, want %d and %d", end["bytes_in"], end["bytes_out"], len(payload), len(payload)+5)
		}
		if _, ok := end["duration_ms"].(float64); !ok {
			t.Errorf("flow.end has no duration_ms: %v", end)
		}
	})

	t.Run("denied TCP is refused at once", func(t *testing.T) {
		rig := newE2ERig(t)
		start := time.Now()
		_, err := dialVIP(rig.alice, "100.81.0.11", rig.be.other.Port())
		if !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(fmt.Sprint(err), "refused") {
			t.Fatalf("dial payroll as alice: want connection refused, got %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal took %v", d)
		}
		ev := rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "payroll"})
		if ev["reason"] != "no-rule" || ev["proto"] != "tcp" {
			t.Errorf("flow.deny = %v", ev)
		}
		// The same destination is open to rig.bob.
		c, err := dialVIP(rig.bob, "100.81.0.11", rig.be.other.Port())
		if err != nil {
			t.Fatalf("dial payroll as bob: %v", err)
		}
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != "other" {
			t.Fatalf("bob read %q", got)
		}
	})

	t.Run("unknown destination is no-service", func(t *testing.T) {
		rig := newE2ERig(t)
		if _, err := dialVIP(rig.alice, "100.81.0.99", 8080); err == nil {
			t.Fatal("dial to an unknown destination succeeded")
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "dst": "100.81.0.99:8080", "reason": "no-service"})
	})

	t.Run("dead backend looks dead", func(t *testing.T) {
		rig := newE2ERig(t)
		if _, err := dialVIP(rig.alice, "100.81.0.12", rig.be.dead.Port()); err == nil {
			t.Fatal("dial through to a dead backend succeeded")
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.end", "identity": "alice", "service": "dead"})
	})

	t.Run("UDP echo for the allowed identity only", func(t *testing.T) {
		rig := newE2ERig(t)
		dst := netip.AddrPortFrom(netip.MustParseAddr("100.81.0.13"), rig.be.udpEcho.Port())
		if err := udpEcho(rig.alice, dst); err != nil {
			t.Fatalf("alice: %v", err)
		}
		before := rig.bob.PortUnreachables()
		if err := udpEcho(rig.bob, dst); err == nil {
			t.Fatal("bob's UDP went through")
		}
		if rig.bob.PortUnreachables() == before {
			t.Error("bob got no ICMP port unreachable")
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "bob", "service": "echo", "proto": "udp", "reason": "no-rule"})
	})

	t.Run("DNS answers the names the identity may reach", func(t *testing.T) {
		rig := newE2ERig(t)
		query := func(c *wgclient.Client, name string) (*dns.Msg, error) {
			conn, err := c.DialUDP(netip.MustParseAddrPort("100.80.0.1:53"))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			dc := &dns.Conn{Conn: conn}
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if err := dc.WriteMsg(m); err != nil {
				return nil, err
			}
			return dc.ReadMsg()
		}
		r, err := query(rig.alice, "ehr.test.internal")
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "100.81.0.10" {
			t.Fatalf("alice ehr.test.internal: %v", r)
		}
		r, err = query(rig.alice, "payroll.test.internal")
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("alice payroll.test.internal: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "dns.query", "identity": "alice", "qname": "payroll.test.internal", "rcode": "NXDOMAIN"})
	})

	t.Run("ping gateway and reachable VIPs only", func(t *testing.T) {
		rig := newE2ERig(t)
		ping := func(c *wgclient.Client, addr string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return c.Ping(ctx, netip.MustParseAddr(addr))
		}
		if err := ping(rig.alice, "100.80.0.1"); err != nil {
			t.Errorf("ping gateway: %v", err)
		}
		if err := ping(rig.alice, "100.81.0.10"); err != nil {
			t.Errorf("ping ehr VIP as alice: %v", err)
		}
		if err := ping(rig.alice, "100.81.0.11"); err == nil {
			t.Error("ping payroll VIP as alice answered")
		}
	})

	t.Run("caps hold per identity", func(t *testing.T) {
		rig := newE2ERig(t)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		testwait.Until(t, 5*time.Second, "alice's earlier flows to end", func() bool { return countFlows(rig.tg.gw, "alice") == 0 })
		for i := 0; i < 3; i++ {
			c, err := dialVIP(rig.alice, "100.81.0.10", rig.be.echo.Port())
			if err != nil {
				t.Fatalf("flow %d under the cap: %v", i, err)
			}
			held = append(held, c)
		}
		testwait.Until(t, 5*time.Second, "3 live flows", func() bool { return countFlows(rig.tg.gw, "alice") == 3 })
		if _, err := dialVIP(rig.alice, "100.81.0.10", rig.be.echo.Port()); err == nil {
			t.Fatal("4th flow over flows_per_identity = 3 was accepted")
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "reason": "flow-limit"})
		c, err := dialVIP(rig.bob, "100.81.0.11", rig.be.other.Port())
		if err != nil {
			t.Fatalf("bob is affected by alice's cap: %v", err)
		}
		c.Close()
	})

	t.Run("spoofed source gets nothing", func(t *testing.T) {
		rig := newE2ERig(t)
		// rig.bob's key, rig.alice's address: cryptokey routing drops it.
		mallory := rig.tg.client(t, rig.bobKey, "100.80.1.10")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if c, err := mallory.DialContext(ctx, "tcp4", fmt.Sprintf("100.81.0.10:%d", rig.be.echo.Port())); err == nil {
			c.Close()
			t.Fatal("a spoofed source reached ehr")
		}
	})

	t.Run("peer handshakes are audited", func(t *testing.T) {
		rig := newE2ERig(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rig.bob.Ping(ctx, netip.MustParseAddr("100.80.0.1")); err != nil {
			t.Fatal(err) // bob's first packet: his session starts
		}
		ev := rig.tg.audit.waitEvent(t, map[string]any{"event": "peer.handshake", "identity": "bob"})
		if ev["site"] != "leeds" || ev["key"] != rig.bobKey.pubB64() {
			t.Errorf("peer.handshake = %v", ev)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		rig := newE2ERig(t)
		// An allowed flow, a denied one and a hidden name, to be counted.
		if c, err := dialVIP(rig.alice, "100.81.0.10", rig.be.echo.Port()); err == nil {
			c.Close()
		} else {
			t.Fatal(err)
		}
		if _, err := dialVIP(rig.alice, "100.81.0.11", rig.be.other.Port()); err == nil {
			t.Fatal("alice reached payroll")
		}
		if c, err := rig.alice.DialUDP(netip.MustParseAddrPort("100.80.0.1:53")); err == nil {
			m := new(dns.Msg)
			m.SetQuestion("payroll.test.internal.", dns.TypeA)
			dc := &dns.Conn{Conn: c}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			dc.WriteMsg(m)
			dc.ReadMsg()
			c.Close()
		}
		rig.tg.audit.waitEvent(t, map[string]any{"event": "dns.query", "identity": "alice", "rcode": "NXDOMAIN"})
		rec := httptest.NewRecorder()
		rig.tg.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		for _, want := range []string{
			`wardgate_flows_total{rule="clinical-ehr",service="ehr",verdict="allow"}`,
			`wardgate_flows_total{rule="",service="payroll",verdict="deny"}`,
			`wardgate_dns_queries_total{rcode="NXDOMAIN"}`,
			`wardgate_bytes_total{direction="in"}`,
			`wardgate_decision_seconds_count`,
			`wardgate_active_flows`,
			`wardgate_peers 2`,
			`wardgate_enforcing 1`,
			`wardgate_config_reloads_total{result="ok"} 0`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if t.Failed() {
			t.Log(body)
		}
	})

}

// TestEndToEndLeavesNoGoroutines: a gateway that carried a flow and was
// closed leaves no goroutine behind.
func TestEndToEndLeavesNoGoroutines(t *testing.T) {
	be := startTestBackends(t)
	baseline := runtime.NumGoroutine()
	rig := newE2ERigWith(t, be)
	c, err := dialVIP(rig.alice, "100.81.0.10", rig.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	rig.alice.Close()
	rig.bob.Close()
	rig.tg.gw.Close()
	testwait.Goroutines(t, 10*time.Second, baseline+2)
}

// e2eRig is one gateway, its backends and two clients: alice (clinical:
// ehr, dead, echo) and bob (admin: payroll), with small caps. Each subtest
// of TestEndToEnd makes its own, so none depends on another.
type e2eRig struct {
	be                      testBackends
	gwKey, aliceKey, bobKey testKey
	tg                      *testGateway
	alice, bob              *wgclient.Client
}

func newE2ERig(t *testing.T) *e2eRig { return newE2ERigWith(t, startTestBackends(t)) }

func newE2ERigWith(t *testing.T, be testBackends) *e2eRig {
	r := &e2eRig{be: be, gwKey: newTestKey(t), aliceKey: newTestKey(t), bobKey: newTestKey(t)}
	pol := sprintfPolicy(r.gwKey, r.aliceKey, r.bobKey, r.be)
	r.tg = startTestGateway(t, memnet.NewSwitch(), r.gwKey, "leeds", pol, "[limits]\nflows_per_identity = 3\ndial_timeout = \"2s\"\nudp_idle = \"1s\"\ndrain = \"1s\"\n")
	r.alice = r.tg.client(t, r.aliceKey, "100.80.1.10")
	r.bob = r.tg.client(t, r.bobKey, "100.80.1.11")
	return r
}

func freeTCPPort(t testing.TB) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func countFlows(g *Gateway, identity string) int {
	n := 0
	for _, f := range g.Flows() {
		if f.Identity == identity {
			n++
		}
	}
	return n
}

// udpEcho sends a datagram and waits for the same bytes back, retrying a
// few times as a UDP application would.
func udpEcho(c *wgclient.Client, dst netip.AddrPort) error {
	conn, err := c.DialUDP(dst)
	if err != nil {
		return err
	}
	defer conn.Close()
	msg := make([]byte, 32)
	rand.Read(msg)
	buf := make([]byte, 64)
	for range 5 {
		conn.Write(msg)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return nil
		}
	}
	return errors.New("no echo")
}
