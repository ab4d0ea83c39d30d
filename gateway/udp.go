package gateway

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// udpBufSize holds the largest datagram the overlay MTU lets through, and
// any a backend may send back.
const udpBufSize = 64 << 10

var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpBufSize); return &b }}

// admitUDP is the overlay's UDP handler, on its packet path: the first
// datagram of a new flow is classified, decided and admitted there, and the
// returned func serves it (pipeline.go). nil refuses the flow (ICMP port
// unreachable).
func (g *Gateway) admitUDP(src, dst netip.AddrPort) func(net.Conn) {
	if g.closing.Load() {
		return nil
	}
	v := g.classifyOverlay(g.state.Load(), src, dst, policy.ProtoUDP)
	if reason := g.unrelayed(v); reason != "" {
		g.logDecision(v, nil, reason)
		return nil
	}
	cs := &overlayUDP{}
	f := g.admit(v, cs)
	if f == nil {
		return nil
	}
	return func(client net.Conn) {
		cs.conn = client
		g.serve(v, f, cs)
	}
}

// overlayUDP is the client side of an overlay UDP flow: the overlay's
// connection for it, which a refusal closes (the refusal of a new flow is
// admitUDP's nil).
type overlayUDP struct{ conn net.Conn }

func (c *overlayUDP) refuse() {
	if c.conn != nil {
		c.conn.Close()
	}
}

func (c *overlayUDP) accept() (net.Conn, error) {
	if c.conn == nil {
		return nil, errClientGone
	}
	return c.conn, nil
}

func (c *overlayUDP) abandon() {}

// udpIdle is the idle timeout of a UDP flow: DNS flows are short-lived.
func (g *Gateway) udpIdle(port uint16) time.Duration {
	if port == 53 {
		return g.cfg.Limits.DNSIdle
	}
	return g.cfg.Limits.UDPIdle
}

// spliceDatagrams relays datagrams both ways between a UDP flow's client
// and its backend until the flow idles out or is stopped.
func spliceDatagrams(client, backend net.Conn, f *flow, idle *idleTimer) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		relayDatagrams(client, backend, &f.bytesOut, idle)
		f.stop()
	}()
	relayDatagrams(backend, client, &f.bytesIn, idle)
	f.stop()
	<-done
}

// relayDatagrams copies datagrams from src to dst until src fails (closed
// by the idle timer or a stop). Write errors on UDP (an ICMP error from the
// backend, a full buffer) drop one datagram, as a router would. Like a TCP
// splice it borrows a buffer only when a datagram is waiting: an idle UDP
// flow holds none.
func relayDatagrams(dst, src net.Conn, n interface{ Add(int64) int64 }, idle *idleTimer) {
	for {
		if err := waitReadable(src); err != nil {
			return
		}
		bp := udpBufs.Get().(*[]byte)
		nr, err := src.Read(*bp)
		if err == nil {
			idle.touch()
			if _, werr := dst.Write((*bp)[:nr]); werr == nil {
				n.Add(int64(nr))
			}
		}
		udpBufs.Put(bp)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if isConnRefused(err) {
				// The backend answered ICMP port unreachable to an earlier
				// datagram; the flow stays until it idles out.
				continue
			}
			return
		}
	}
}
