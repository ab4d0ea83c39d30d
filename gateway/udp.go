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

// admitUDP decides the first datagram of a new UDP flow. It runs on the
// overlay's packet path, so it only decides and logs; the flow itself runs
// in the returned func. nil refuses the flow (ICMP port unreachable).
func (g *Gateway) admitUDP(src, dst netip.AddrPort) func(net.Conn) {
	if g.closing.Load() {
		return nil
	}
	v := g.decide(g.state.Load(), src, dst, policy.ProtoUDP)
	if !v.pass {
		g.logDecision(v, "")
		return nil
	}
	if lim := g.limits.acquire(v.id.Name, false); lim != limitNone {
		g.logDecision(v, string(lim))
		return nil
	}
	g.logDecision(v, "")
	g.flowsWG.Add(1)
	return func(client net.Conn) {
		defer g.flowsWG.Done()
		defer g.limits.releaseFlow(v.id.Name)
		defer g.recoverFlow(v)
		g.serveUDP(v, client)
	}
}

// udpIdle is the idle timeout of a UDP flow: DNS flows are short-lived.
func (g *Gateway) udpIdle(port uint16) time.Duration {
	if port == 53 {
		return g.cfg.Limits.DNSIdle
	}
	return g.cfg.Limits.UDPIdle
}

// serveUDP relays datagrams between the client's flow and one backend
// until the flow idles out or is stopped.
func (g *Gateway) serveUDP(v verdict, client net.Conn) {
	defer client.Close()
	addrs := g.backends(v.svc, v.dst, v.proto)
	var backend net.Conn
	var err error
	if len(addrs) == 0 {
		err = errNoBackend
	} else {
		// A UDP "dial" only picks a route; failover needs a reply timeout
		// that only the application knows, so the first endpoint in the
		// round-robin order serves the flow.
		backend, err = net.Dial("udp", addrs[0].String())
	}
	stopOnce := sync.OnceFunc(func() {
		client.Close()
		if backend != nil {
			backend.Close()
		}
	})
	f := g.newFlow(v, stopOnce)
	defer g.flows.remove(f)
	if err != nil {
		g.logEnd(f, err.Error())
		return
	}
	defer stopOnce()

	idle := newIdleTimer(g.udpIdle(v.dst.Port()), stopOnce)
	defer idle.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		relayDatagrams(client, backend, &f.bytesOut, idle)
		stopOnce()
	}()
	relayDatagrams(backend, client, &f.bytesIn, idle)
	stopOnce()
	<-done
	errText := ""
	if f.revoked.Load() {
		errText = "revoked"
	}
	g.logEnd(f, errText)
}

// relayDatagrams copies datagrams from src to dst until src fails (closed
// by the idle timer or a stop). Write errors on UDP (an ICMP error from the
// backend, a full buffer) drop one datagram, as a router would.
func relayDatagrams(dst, src net.Conn, n interface{ Add(int64) int64 }, idle *idleTimer) {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		nr, err := src.Read(buf)
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
		idle.touch()
		if _, err := dst.Write(buf[:nr]); err == nil {
			n.Add(int64(nr))
		}
	}
}
