package gateway

// The in-process harness of the gateway's tests: key pairs, the audit log
// as a buffer, loopback backends, gateways on an in-memory switch, and
// userspace WireGuard clients.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// testKey is a WireGuard key pair for tests.
type testKey struct {
	priv wgkey.Private
	pub  wgkey.Public
}

func newTestKey(t testing.TB) testKey {
	t.Helper()
	priv, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv, priv.Public()}
}

func (k testKey) pubB64() string  { return k.pub.String() }
func (k testKey) privB64() string { return k.priv.Base64() }

// syncBuffer collects the audit log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events(t testing.TB) []map[string]any {
	s.mu.Lock()
	data := append([]byte(nil), s.b.Bytes()...)
	s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// waitEvent waits for an audit event that has all of want's fields.
func (s *syncBuffer) waitEvent(t testing.TB, want map[string]any) map[string]any {
	t.Helper()
	var got map[string]any
	testwait.Until(t, 5*time.Second, fmt.Sprintf("audit event %v", want), func() bool {
		for _, ev := range s.events(t) {
			ok := true
			for k, v := range want {
				if fmt.Sprint(ev[k]) != fmt.Sprint(v) {
					ok = false
					break
				}
			}
			if ok {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// testBackends are real sockets on loopback.
type testBackends struct {
	echo    netip.AddrPort // TCP: reads to EOF, answers "echo:"+data, closes
	other   netip.AddrPort // TCP: answers "other" at once
	dead    netip.AddrPort // TCP: nobody listens (refused)
	udpEcho netip.AddrPort
}

func startTestBackends(t testing.TB) testBackends {
	t.Helper()
	listen := func(serve func(net.Conn)) netip.AddrPort {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					serve(c)
				}()
			}
		}()
		return ln.Addr().(*net.TCPAddr).AddrPort()
	}
	var b testBackends
	b.echo = listen(func(c net.Conn) {
		data, _ := io.ReadAll(c)
		c.Write(append([]byte("echo:"), data...))
	})
	b.other = listen(func(c net.Conn) { c.Write([]byte("other")) })
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	b.dead = ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	b.udpEcho = testnet.UDPEcho(t)
	return b
}

// testGateway is a gateway on an in-memory switch with its audit log.
type testGateway struct {
	gw    *Gateway
	key   testKey
	sw    *memnet.Switch
	audit *syncBuffer
	port  uint16
	dir   string
}

// startTestGateway writes the policy and a gateway.toml into a temp dir
// and starts a gateway on sw.
func startTestGateway(t testing.TB, sw *memnet.Switch, key testKey, site, policyText, extra string) *testGateway {
	return startTestGatewayAt(t, sw, key, site, 51820, t.TempDir(), policyText, extra)
}

// startTestGatewayAt starts a gateway listening on 127.0.0.1:port of sw
// with its files in dir (a restart reuses the dir).
func startTestGatewayAt(t testing.TB, sw *memnet.Switch, key testKey, site string, port int, dir, policyText, extra string, opts ...func(*Options)) *testGateway {
	t.Helper()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("gw.key", key.privB64()+"\n", 0o600)
	write("policy.toml", policyText, 0o644)
	write("gateway.toml", fmt.Sprintf("site = %q\npolicy = \"policy.toml\"\nprivate_key_file = \"gw.key\"\nlisten = \"127.0.0.1:%d\"\n%s", site, port, extra), 0o644)
	cfg, err := LoadConfig(filepath.Join(dir, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGateway{key: key, sw: sw, audit: &syncBuffer{}, dir: dir}
	o := Options{
		Bind:   sw.Bind(netip.MustParseAddr("127.0.0.1")),
		Audit:  NewAuditLogger(tg.audit),
		Logger: slogToTest(t),
	}
	for _, f := range opts {
		f(&o)
	}
	tg.gw, err = Start(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	tg.port = tg.gw.Port()
	t.Cleanup(func() { tg.gw.Close() })
	return tg
}

// client connects a userspace WireGuard client with key and address.
func (tg *testGateway) client(t testing.TB, key testKey, addr string) *wgclient.Client {
	t.Helper()
	c, err := wgclient.New(wgclient.Config{
		PrivateKey:    key.priv,
		Addresses:     []netip.Addr{netip.MustParseAddr(addr)},
		PeerPublicKey: tg.key.pub,
		PeerEndpoint:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tg.port),
		Bind:          tg.sw.Bind(netip.MustParseAddr("127.0.0.2")),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const e2ePolicy = `
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
groups = ["admin"]

[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["%[4]s"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["%[5]s"]

[[service]]
name = "dead"
site = "leeds"
vip = "100.81.0.12"
endpoints = ["%[6]s"]

[[service]]
name = "echo"
site = "leeds"
vip = "100.81.0.13"
endpoints = ["%[7]s/udp"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr", "dead", "echo"]

[[rule]]
name = "admin-payroll"
from = ["group:admin"]
to = ["payroll"]
`

// sprintfPolicy fills e2ePolicy in.
func sprintfPolicy(gw, alice, bob testKey, be testBackends) string {
	return fmt.Sprintf(e2ePolicy, gw.pubB64(), alice.pubB64(), bob.pubB64(), be.echo, be.other, be.dead, be.udpEcho)
}

func dialVIP(c *wgclient.Client, vip string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.DialContext(ctx, "tcp4", fmt.Sprintf("%s:%d", vip, port))
}
