package overlay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// relayNet is two gateways and a client on one memnet switch: the client's
// home gateway relays flows to the serving gateway's virtual addresses; the
// serving gateway terminates them in its stack.
type relayNet struct {
	t           testing.TB
	sw          *memnet.Switch
	home, serve *overlay.Overlay
	homeKey     wgkey.Private
	homeEP      netip.AddrPort
	client      *wgclient.Client
	clientAddr  netip.Addr
	vips        netip.Prefix

	routed   chan *overlay.Relay   // relays home allowed
	ended    chan overlay.RelayEnd // relays that ended at home
	served   chan netip.AddrPort   // TCP sources the serving stack accepted
	homeSeen chan netip.AddrPort   // sources of flows home's own stack got
	serveUDP chan netip.AddrPort   // UDP sources the serving stack accepted
	conns    chan net.Conn         // the serving side's accepted conns

	lastClientKey wgkey.Private // of the client newClient made last
}

var (
	homeAddr  = netip.MustParseAddr("100.80.0.1")
	serveAddr = netip.MustParseAddr("100.80.0.2")
	vipA      = netip.MustParseAddrPort("100.81.0.10:80")
)

func newRelayNet(t testing.TB) *relayNet {
	t.Helper()
	n := &relayNet{
		t: t, sw: memnet.NewSwitch(), homeKey: mustKey(t),
		homeEP:     netip.MustParseAddrPort("10.0.0.1:51820"),
		clientAddr: netip.MustParseAddr("100.80.1.10"),
		vips:       netip.MustParsePrefix("100.81.0.0/24"),
		routed:     make(chan *overlay.Relay, 16), ended: make(chan overlay.RelayEnd, 16),
		served: make(chan netip.AddrPort, 16), homeSeen: make(chan netip.AddrPort, 16),
		serveUDP: make(chan netip.AddrPort, 16), conns: make(chan net.Conn, 16),
	}
	serveKey := mustKey(t)
	serveEP := netip.MustParseAddrPort("10.0.0.2:51820")

	home, err := overlay.New(overlay.Config{
		PrivateKey: n.homeKey, Bind: n.sw.BindAt(n.homeEP), Address: homeAddr, Logger: testLogger(t),
		Handler: overlay.Handler{
			TCP: func(r *overlay.TCPRequest) { n.homeSeen <- r.Src; r.Reject() },
			UDP: func(src, dst netip.AddrPort) func(net.Conn) { n.homeSeen <- src; return nil },
			Route: func(r *overlay.Relay) bool {
				if !n.vips.Contains(r.Dst.Addr()) || r.Src.Addr() != n.clientAddr {
					return false
				}
				r.OnEnd = func(e overlay.RelayEnd) {
					select {
					case n.ended <- e:
					default: // a test that does not read ends
					}
				}
				select {
				case n.routed <- r:
				default:
				}
				return true
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { home.Close() })
	serve, err := overlay.New(overlay.Config{
		// One client opens many flows at once in these tests.
		TCP:        overlay.TCPConfig{MaxInFlightPerSource: 1024},
		PrivateKey: serveKey, Bind: n.sw.BindAt(serveEP), Address: serveAddr, Logger: testLogger(t),
		Handler: overlay.Handler{
			TCP: func(r *overlay.TCPRequest) {
				select {
				case n.served <- r.Src:
				default:
				}
				c, err := r.Accept()
				if err != nil {
					return
				}
				select {
				case n.conns <- c:
				default:
				}
				if r.Dst.Port() == 9 { // discard
					io.Copy(io.Discard, c)
				} else {
					io.Copy(c, c)
				}
				c.Close()
			},
			UDP: func(src, dst netip.AddrPort) func(net.Conn) {
				if dst.Port() == 9 { // discard: refused with port unreachable
					return nil
				}
				n.serveUDP <- src
				return func(c net.Conn) {
					defer c.Close()
					buf := make([]byte, 2048)
					for {
						k, err := c.Read(buf)
						if err != nil {
							return
						}
						c.Write(buf[:k])
					}
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Close() })
	n.home, n.serve = home, serve

	n.client = n.newClient(n.clientAddr, 1420)
	clientKey := n.lastClientKey
	mustSetPeers(t, home,
		overlay.Peer{PublicKey: clientKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(n.clientAddr, 32)}},
		overlay.Peer{PublicKey: serveKey.Public(), Endpoint: serveEP,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(serveAddr, 32), n.vips}})
	mustSetPeers(t, serve,
		overlay.Peer{PublicKey: n.homeKey.Public(), Endpoint: n.homeEP,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(homeAddr, 32), netip.MustParsePrefix("100.80.1.0/24")}})
	return n
}

func mustSetPeers(t testing.TB, o *overlay.Overlay, peers ...overlay.Peer) {
	t.Helper()
	if err := o.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
}

// newClient starts a client with addr as its tunnel address, pointed at
// home; the home gateway knows it only if the test adds its key.
func (n *relayNet) newClient(addr netip.Addr, mtu int) *wgclient.Client {
	n.t.Helper()
	key := mustKey(n.t)
	n.lastClientKey = key
	c, err := wgclient.New(wgclient.Config{
		PrivateKey: key, Addresses: []netip.Addr{addr}, MTU: mtu,
		PeerPublicKey: n.homeKey.Public(), PeerEndpoint: n.homeEP,
		Bind: n.sw.Bind(netip.AddrFrom4([4]byte{10, 0, 1, addr.As4()[3]})),
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

// echo writes size random bytes on c and checks they come back.
func echo(t *testing.T, c net.Conn, size int) {
	t.Helper()
	want := make([]byte, size)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(want); errc <- err }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echo differs")
	}
}

func TestRelayTCPKeepsClientAddressAndAbortResetsBothEnds(t *testing.T) {
	n := newRelayNet(t)
	c, err := n.client.DialContext(ctxTimeout(t, 10*time.Second), "tcp", vipA.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := testwait.Recv(t, n.routed, "route")
	if src := testwait.Recv(t, n.served, "served"); src.Addr() != n.clientAddr || src != r.Src {
		t.Fatalf("serving stack saw source %v, relay %v; want the client's own %v", src, r.Src, n.clientAddr)
	}
	echo(t, c, 1<<20)
	if got := n.home.Relays(); got != 1 {
		t.Fatalf("home relays %d flows, want 1", got)
	}
	if in, out := r.Bytes(); in != 1<<20 || out != 1<<20 {
		t.Fatalf("relay counted %d in, %d out; want %d each", in, out, 1<<20)
	}
	served := testwait.Recv(t, n.conns, "served conn")

	start := time.Now()
	r.Abort()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) && !isReset(err) {
		t.Fatalf("client read after abort: %v, want a reset", err)
	}
	served.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := served.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("serving side read after abort: %v, want the connection ended", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("abort took %v to reach both ends", d)
	}
	if e := testwait.Recv(t, n.ended, "end"); e.Reason != overlay.RelayAborted || e.BytesIn != 1<<20 {
		t.Fatalf("end %+v, want aborted with %d bytes in", e, 1<<20)
	}
	if got := n.home.Relays(); got != 0 {
		t.Fatalf("home still relays %d flows after abort", got)
	}
}

func isReset(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("reset"))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestRelayTCPEndsWhenBothSidesFinish(t *testing.T) {
	// The end is reported when the second FIN passes, not after the linger.
	defer overlay.SetRelayFinLinger(overlay.SetRelayFinLinger(time.Minute))
	n := newRelayNet(t)
	c, err := n.client.DialContext(ctxTimeout(t, 10*time.Second), "tcp", vipA.String())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, 64<<10)
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.Copy(io.Discard, c); err != nil { // the server's FIN
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	if e := testwait.Recv(t, n.ended, "end"); e.Reason != overlay.RelayClosed || e.BytesIn != 64<<10 || e.BytesOut != 64<<10 {
		t.Fatalf("end %+v, want closed with %d bytes each way", e, 64<<10)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the end was reported %v after both FINs", d)
	}
}

func TestRelayUDPAndRefusalReachesClient(t *testing.T) {
	n := newRelayNet(t)
	c, err := n.client.DialUDP(netip.AddrPortFrom(vipA.Addr(), 5000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	testwait.Recv(t, n.routed, "route")
	if src := testwait.Recv(t, n.serveUDP, "udp served"); src.Addr() != n.clientAddr {
		t.Fatalf("serving stack saw %v", src)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := c.Read(buf); err != nil || string(buf[:k]) != "ping" {
		t.Fatalf("udp echo: %q, %v", buf[:k], err)
	}

	// A datagram the serving site refuses: its ICMP port unreachable is
	// relayed back to the client, quoting the client's flow.
	d, err := n.client.DialUDP(netip.AddrPortFrom(vipA.Addr(), 9))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before := n.client.PortUnreachables()
	testwait.Until(t, 5*time.Second, "a port unreachable at the client", func() bool {
		d.Write([]byte("x")) // resend until the error comes back
		return n.client.PortUnreachables() != before
	})
}

// TestRelayDropsWhatWasNotAsked: the serving site cannot send a client
// anything but replies to a relayed flow; such a packet goes to the home
// stack (which forwards nothing), never to the client.
func TestRelayDropsWhatWasNotAsked(t *testing.T) {
	n := newRelayNet(t)
	pc, err := n.client.ListenUDP(netip.AddrPortFrom(n.clientAddr, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// Establish the site session first, with an allowed flow.
	c, err := n.client.DialUDP(netip.AddrPortFrom(vipA.Addr(), 5000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	testwait.Recv(t, n.routed, "route")

	u, err := n.serve.DialUDPFrom(vipA, netip.AddrPortFrom(n.clientAddr, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("unsolicited"))
	if src := testwait.Recv(t, n.homeSeen, "home stack"); src.Addr() != vipA.Addr() {
		t.Fatalf("home stack saw %v", src)
	}
	pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := pc.ReadFrom(make([]byte, 64)); err == nil {
		t.Fatal("the client received a datagram nobody asked for")
	}
}

// TestRelayForgedSource: a client sending with another client's address
// is dropped by cryptokey routing before any relay decision.
func TestRelayForgedSource(t *testing.T) {
	n := newRelayNet(t)
	forger := n.newClient(n.clientAddr, 1420) // claims the first client's address
	forgerKey := n.lastClientKey
	ownAddr := netip.MustParseAddr("100.80.1.11")
	mustSetPeers(t, n.home,
		overlay.Peer{PublicKey: forgerKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(ownAddr, 32)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := forger.DialContext(ctx, "tcp", vipA.String()); err == nil {
		c.Close()
		t.Fatal("a forged source reached the serving site")
	}
	select {
	case r := <-n.routed:
		t.Fatalf("a forged packet was routed: %v -> %v", r.Src, r.Dst)
	default:
	}
}

func TestRelayRouteFalseLeavesFlowToStack(t *testing.T) {
	n := newRelayNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.client.DialContext(ctx, "tcp", "100.82.0.1:80")
	if err == nil {
		t.Fatal("dial succeeded; the home stack rejects it")
	}
	if src := testwait.Recv(t, n.homeSeen, "home stack"); src.Addr() != n.clientAddr {
		t.Fatalf("home stack saw %v", src)
	}
}

// TestRelayManyConcurrentFlows: 300 relayed flows at once all complete.
func TestRelayManyConcurrentFlows(t *testing.T) {
	n := newRelayNet(t)
	const flows = 300
	errc := make(chan error, flows)
	for i := range flows {
		go func() {
			c, err := n.client.DialContext(ctxTimeout(t, 30*time.Second), "tcp", vipA.String())
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			msg := []byte{byte(i), byte(i >> 8), 1, 2, 3}
			c.Write(msg)
			got := make([]byte, len(msg))
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				errc <- errors.Join(err, errors.New("echo differs"))
				return
			}
			errc <- nil
		}()
	}
	for range flows {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkRelayThroughput sends bulk TCP from a client through a home
// gateway that relays it to a serving gateway that discards it, all in one
// process over memnet: the relay's cost per byte, for profiles
// (-cpuprofile) more than for figures (the three devices share the CPU).
func BenchmarkRelayThroughput(b *testing.B) {
	n := newRelayNet(b)
	c, err := n.client.DialContext(ctxTimeout(b, time.Minute), "tcp", netip.AddrPortFrom(vipA.Addr(), 9).String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(chunk))/1e6/(cpuTime()-cpu0).Seconds(), "MB/cpu-s")
}
