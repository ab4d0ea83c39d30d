package overlay_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay"
)

func TestMaxInFlightPerSource(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) {
			inHandler.Add(1)
			<-release
			echoTCP(r)
		},
		UDP: refuseUDP,
	}, overlay.Config{TCP: overlay.TCPConfig{MaxInFlight: 16, MaxInFlightPerSource: 2}})
	ps := n.clients(2)
	greedy, other := ps[0], ps[1]

	const tries = 6
	errs := make(chan error, tries)
	for range tries {
		go func() {
			errs <- dialOK(t, greedy, "100.81.0.10:80", 10*time.Second)
		}()
	}
	// All but two are reset quickly.
	refused := 0
	for refused < tries-2 {
		select {
		case err := <-errs:
			if !isRefused(err) {
				t.Fatalf("over-share dial: %v, want refused", err)
			}
			refused++
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d over-share dials refused", refused, tries-2)
		}
	}
	testwait.Until(t, 5*time.Second, "2 requests in the handler", func() bool { return inHandler.Load() == 2 })
	// Another source still gets its share while greedy's are pending.
	go func() { errs <- dialOK(t, other, "100.81.0.10:80", 10*time.Second) }()
	testwait.Until(t, 5*time.Second, "the other source's request in the handler too", func() bool { return inHandler.Load() == 3 })
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("accepted dial: %v", err)
		}
	}
	// Slots are released: greedy can open more now.
	if err := dialOK(t, greedy, "100.81.0.10:80", 5*time.Second); err != nil {
		t.Errorf("after release: %v", err)
	}
}

func TestListenersTakePrecedence(t *testing.T) {
	var tcpCalls, udpCalls atomic.Int32
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) { tcpCalls.Add(1); echoTCP(r) },
		UDP: func(src, dst netip.AddrPort) func(net.Conn) { udpCalls.Add(1); return echoUDP },
	}, overlay.Config{})
	p := n.clients(1)[0]

	l, err := n.gw.ListenTCP(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("listener"))
			}()
		}
	}()
	c, err := p.DialContext(ctxTimeout(t, 5*time.Second), "tcp", "100.80.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "listener" || tcpCalls.Load() != 0 {
		t.Errorf("got %q, handler calls %d: listener did not take the flow", got, tcpCalls.Load())
	}
	// Another port on the gateway's address goes to the handler.
	if err := dialOK(t, p, "100.80.0.1:8081", 5*time.Second); err != nil || tcpCalls.Load() != 1 {
		t.Errorf("port without listener: %v, handler calls %d", err, tcpCalls.Load())
	}

	pc, err := n.gw.ListenUDP(5353)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("L:"), buf[:k]...), from)
		}
	}()
	u, err := p.DialUDP(netip.MustParseAddrPort("100.80.0.1:5353"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("q"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	k, err := u.Read(buf)
	if err != nil || string(buf[:k]) != "L:q" || udpCalls.Load() != 0 {
		t.Errorf("UDP listener: %q %v, handler calls %d", buf[:k], err, udpCalls.Load())
	}
}

func TestDialTCPToPeer(t *testing.T) {
	n := newTestNet(t, memTransport, overlay.Handler{TCP: echoTCP, UDP: refuseUDP}, overlay.Config{})
	p := n.clients(1)[0]
	// The gateway learns the client's endpoint from its first handshake.
	if err := p.Ping(ctxTimeout(t, 5*time.Second), gatewayAddr); err != nil {
		t.Fatal(err)
	}
	l, err := p.ListenTCP(netip.AddrPortFrom(p.addr, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := n.gw.DialTCP(ctxTimeout(t, 5*time.Second), netip.AddrPortFrom(p.addr, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().String(); !strings.HasPrefix(got, gatewayAddr.String()+":") {
		t.Errorf("dial from %v, want the gateway's address", got)
	}
	c.Write([]byte("site-link"))
	buf := make([]byte, 9)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "site-link" {
		t.Errorf("read %q, %v", buf, err)
	}
}

func TestHandlerPanicsAreContained(t *testing.T) {
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) {
			switch r.Dst.Port() {
			case 666:
				panic("boom")
			case 668:
				c, err := r.Accept()
				if err == nil {
					c.Write([]byte("x"))
				}
				panic("boom after accept")
			}
			echoTCP(r)
		},
		UDP: func(src, dst netip.AddrPort) func(net.Conn) {
			switch dst.Port() {
			case 666:
				panic("boom")
			case 667:
				return func(net.Conn) { panic("flow boom") }
			}
			return echoUDP
		},
	}, overlay.Config{})
	p := n.clients(1)[0]
	if err := dialOK(t, p, "100.81.0.10:666", 5*time.Second); !isRefused(err) {
		t.Errorf("panicking TCP handler: %v, want refused", err)
	}
	// A panic after Accept closes the accepted conn: the client sees EOF.
	c, err := p.DialContext(ctxTimeout(t, 5*time.Second), "tcp", "100.81.0.10:668")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); err != nil || string(got) != "x" {
		t.Errorf("after a panic past Accept: read %q, %v; want \"x\" then EOF", got, err)
	}
	c.Close()
	before := p.PortUnreachables()
	u, _ := p.DialUDP(netip.MustParseAddrPort("100.81.0.10:666"))
	u.Write([]byte("x"))
	u.Close()
	u, _ = p.DialUDP(netip.MustParseAddrPort("100.81.0.10:667"))
	u.Write([]byte("x"))
	u.Close()
	testwait.Until(t, 5*time.Second, "a port unreachable from a panicking UDP handler", func() bool { return p.PortUnreachables() != before })
	if err := dialOK(t, p, "100.81.0.10:80", 5*time.Second); err != nil {
		t.Errorf("after panics: %v", err)
	}
}

// Closing a UDP flow's conn releases it: the next datagram is a new flow.
func TestUDPFlowCloseReleases(t *testing.T) {
	var calls atomic.Int32
	closed := make(chan struct{}, 3)
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: echoTCP,
		UDP: func(src, dst netip.AddrPort) func(net.Conn) {
			calls.Add(1)
			return func(c net.Conn) {
				buf := make([]byte, 100)
				k, err := c.Read(buf)
				if err == nil {
					c.Write(buf[:k])
				}
				c.Close() // one datagram per flow
				closed <- struct{}{}
			}
		},
	}, overlay.Config{})
	p := n.clients(1)[0]
	u, err := p.DialUDP(netip.MustParseAddrPort("100.81.0.20:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	buf := make([]byte, 100)
	for i := range 3 {
		u.Write([]byte("x"))
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Read(buf); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		// A datagram sent before the flow's conn is closed would go to
		// the old flow and be lost with it.
		<-closed
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("handler called %d times, want 3 (one per flow)", got)
	}
}

func TestCloseNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, tr := range transports {
		func() {
			st := &stopTB{TB: t}
			n := newTestNet(st, tr, overlay.Handler{TCP: echoTCP, UDP: func(src, dst netip.AddrPort) func(net.Conn) { return echoUDP }}, overlay.Config{})
			ps := n.clients(2)
			var wg sync.WaitGroup
			for _, p := range ps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := dialOK(t, p, "100.81.0.10:80", 5*time.Second); err != nil {
						t.Error(err)
					}
					u, err := p.DialUDP(netip.MustParseAddrPort("100.81.0.20:53"))
					if err == nil {
						u.Write([]byte("x"))
						u.SetReadDeadline(time.Now().Add(5 * time.Second))
						u.Read(make([]byte, 10))
						u.Close()
					}
				}()
			}
			wg.Wait()
			// A live TCP flow at Close must end too.
			c, err := ps[0].DialContext(context.Background(), "tcp", "100.81.0.10:80")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st.cleanup()
		}()
	}
	testwait.Goroutines(t, 10*time.Second, base)
}

// stopTB runs cleanups when asked instead of at the end of the test.
type stopTB struct {
	testing.TB
	fns []func()
}

func (s *stopTB) Cleanup(f func()) { s.fns = append(s.fns, f) }
func (s *stopTB) cleanup() {
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
}

// TCP keepalive finds a peer that vanished without closing: once the peer
// is gone, the accepted conn's Read fails after idle + count x interval.
func TestKeepAliveFindsVanishedPeer(t *testing.T) {
	readErr := make(chan error, 1)
	greeted := make(chan struct{})
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) {
			c, err := r.Accept()
			if err != nil {
				readErr <- err
				return
			}
			defer c.Close()
			if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
				readErr <- err
				return
			}
			close(greeted)
			_, err = io.Copy(io.Discard, c)
			if err == nil {
				err = io.EOF
			}
			readErr <- err
		},
		UDP: refuseUDP,
	}, overlay.Config{TCP: overlay.TCPConfig{KeepAliveIdle: time.Second, KeepAliveInterval: 500 * time.Millisecond, KeepAliveCount: 2}})
	p := n.clients(1)[0]
	c, err := p.DialContext(ctxTimeout(t, 5*time.Second), "tcp", "100.81.0.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	testwait.Recv(t, greeted, "the gateway to read the greeting") // nothing left in flight
	// The peer vanishes: the gateway can no longer reach it, and nothing
	// tells its stack.
	if err := n.gw.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-readErr:
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("conn ended after %v (%v), before keepalive could have", d, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("conn to a vanished peer still open after 10s")
	}
}
