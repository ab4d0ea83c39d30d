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
	if reason := g.unrelayed(v); reason != "" {
		g.logDecision(v, nil, reason)
		return nil
	}
	serve := g.admitUDPVerdict(v, nil)
	if serve == nil {
		return nil
	}
	return func(client net.Conn) {
		serve(func() (net.Conn, error) {
			if client == nil {
				return nil, errors.New("the overlay could not set up the flow")
			}
			return client, nil
		})
	}
}

// admitUDPVerdict refuses v (logging why, and telling deny when set) or
// returns the func that serves it once the client side is accepted.
func (g *Gateway) admitUDPVerdict(v verdict, deny func(reason string)) func(accept func() (net.Conn, error)) {
	refuse := func(reason string) {
		if deny != nil {
			deny(reason)
		}
	}
	if !v.pass {
		refuse(v.d.Reason.String())
		g.logDecision(v, nil, "")
		return nil
	}
	if lim := g.limits.acquire(v.id.Name, kindUDP); lim != limitNone {
		refuse(string(lim))
		g.logDecision(v, nil, string(lim))
		return nil
	}
	f := g.newFlow(v)
	g.logDecision(v, f, "")
	g.flowsWG.Add(1)
	return func(accept func() (net.Conn, error)) {
		defer g.flowsWG.Done()
		defer g.limits.releaseFlow(v.id.Name, kindUDP)
		defer g.removeFlow(f)
		defer g.recoverFlow(v, f)
		g.serveUDP(v, f, accept)
	}
}

// udpIdle is the idle timeout of a UDP flow: DNS flows are short-lived.
func (g *Gateway) udpIdle(port uint16) time.Duration {
	if port == 53 {
		return g.cfg.Limits.DNSIdle
	}
	return g.cfg.Limits.UDPIdle
}

// dialUDPFlow connects a UDP flow to its backend: a local socket, or, for
// a LAN device behind a listener, the service's site from the device's
// overlay address.
func (g *Gateway) dialUDPFlow(v verdict, f *flow) (net.Conn, error) {
	if g.isRemote(v) {
		if !g.links.up(v.svc.Site) {
			return nil, errSiteDown(v.svc.Site)
		}
		return g.overlay.DialUDPFrom(v.src, v.dst)
	}
	addrs := g.backends(v.svc, v.dst, v.proto)
	if len(addrs) == 0 {
		return nil, errNoBackend
	}
	// A UDP "dial" only picks a route; failover needs a reply timeout that
	// only the application knows, so the first endpoint in the round-robin
	// order serves the flow.
	return net.Dial("udp", addrs[0].String())
}

// serveUDP relays datagrams between the client's flow and one backend
// until the flow idles out or is stopped.
func (g *Gateway) serveUDP(v verdict, f *flow, accept func() (net.Conn, error)) {
	backend, err := g.dialUDPFlow(v, f)
	if err != nil {
		g.logEnd(f, err.Error())
		return
	}
	f.conns.add(backend)
	client, err := accept()
	if err != nil {
		g.logEnd(f, "accept: "+err.Error())
		f.stop()
		return
	}
	f.conns.add(client)
	idle := newIdleTimer(g.udpIdle(v.dst.Port()), f.stop)
	defer idle.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		relayDatagrams(client, backend, &f.bytesOut, idle)
		f.stop()
	}()
	relayDatagrams(backend, client, &f.bytesIn, idle)
	f.stop()
	<-done
	errText := ""
	if f.revoked.Load() {
		errText = "revoked"
	}
	g.logEnd(f, errText)
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
