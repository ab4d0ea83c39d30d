package overlay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// transport is how devices in a test reach each other.
type transport string

const (
	memTransport transport = "mem" // memnet switch, no sockets
	udpTransport transport = "udp" // real UDP on loopback
)

var transports = []transport{memTransport, udpTransport}

var gatewayAddr = netip.MustParseAddr("100.80.0.1")

// testNet is one gateway and its clients.
type testNet struct {
	t      testing.TB
	tr     transport
	sw     *memnet.Switch
	gw     *overlay.Overlay
	gwKey  wgkey.Private
	gwEP   netip.AddrPort
	nextIP byte
}

func mustKey(t testing.TB) wgkey.Private {
	t.Helper()
	k, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testLogger logs to t (shown for failing tests) when OVERLAY_TEST_LOG is
// set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("OVERLAY_TEST_LOG") == "" {
		return nil
	}
	w := &tWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter writes to t until the test ends (wireguard-go's workers log
// their exit after Close returns).
type tWriter struct {
	t testing.TB

	mu      sync.Mutex
	stopped bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// newTestNet starts a gateway with h on tr. cfg may tune TCP etc.; its
// PrivateKey, Bind, Address and Handler are filled in.
func newTestNet(t testing.TB, tr transport, h overlay.Handler, cfg overlay.Config) *testNet {
	t.Helper()
	n := &testNet{t: t, tr: tr, gwKey: mustKey(t), nextIP: 10}
	cfg.PrivateKey = n.gwKey
	cfg.Address = gatewayAddr
	cfg.Handler = h
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	switch tr {
	case memTransport:
		n.sw = memnet.NewSwitch()
		n.gwEP = netip.MustParseAddrPort("10.0.0.1:51820")
		cfg.Bind = n.sw.BindAt(n.gwEP)
	case udpTransport:
		cfg.Bind = nil
		cfg.ListenPort = 0
	}
	gw, err := overlay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.gw = gw
	if tr == udpTransport {
		n.gwEP = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), gw.Port())
	}
	t.Cleanup(func() { gw.Close() })
	return n
}

// peer is a client and what the gateway knows of it.
type peer struct {
	*wgclient.Client
	key  wgkey.Private
	addr netip.Addr
	peer overlay.Peer
}

// newPeer creates a client with overlay address addr (zero: the next free
// one) that the gateway does NOT know yet; see addPeers.
func (n *testNet) newPeer(addr netip.Addr) *peer {
	n.t.Helper()
	if !addr.IsValid() {
		n.nextIP++
		addr = netip.AddrFrom4([4]byte{100, 80, 1, n.nextIP})
	}
	key := mustKey(n.t)
	cfg := wgclient.Config{
		PrivateKey:    key,
		Addresses:     []netip.Addr{addr},
		PeerPublicKey: n.gwKey.Public(),
		PeerEndpoint:  n.gwEP,
	}
	if n.tr == memTransport {
		n.nextIP++
		cfg.Bind = n.sw.Bind(netip.AddrFrom4([4]byte{10, 0, 1, n.nextIP}))
	}
	if os.Getenv("OVERLAY_TEST_LOG") != "" {
		w := &tWriter{t: n.t}
		n.t.Cleanup(w.stop)
		cfg.Logf = func(f string, a ...any) { fmt.Fprintf(w, "client %v: "+f, append([]any{addr}, a...)...) }
	}
	c, err := wgclient.New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return &peer{
		Client: c,
		key:    key,
		addr:   addr,
		peer: overlay.Peer{
			PublicKey:  key.Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())},
		},
	}
}

// clients creates k clients known to the gateway.
func (n *testNet) clients(k int) []*peer {
	n.t.Helper()
	var ps []*peer
	var cfg []overlay.Peer
	for range k {
		p := n.newPeer(netip.Addr{})
		ps = append(ps, p)
		cfg = append(cfg, p.peer)
	}
	if err := n.gw.SetPeers(cfg); err != nil {
		n.t.Fatal(err)
	}
	return ps
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(fmt.Sprint(tr), func(t *testing.T) { f(t, tr) })
	}
}
