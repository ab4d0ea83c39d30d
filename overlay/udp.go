package overlay

import (
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// handleUDP is the stack's default UDP handler: it sees only datagrams that
// no endpoint (a listener or a live flow) took, i.e. the first datagram of a
// new flow. It asks the handler synchronously; returning false makes the
// stack answer ICMP port unreachable.
func (o *Overlay) handleUDP(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	src := addrPortOf(id.RemoteAddress, id.RemotePort)
	dst := addrPortOf(id.LocalAddress, id.LocalPort)
	fn := o.askUDP(src, dst)
	if fn == nil {
		return false
	}
	var (
		wq  waiter.Queue
		ep  tcpip.Endpoint
		err tcpip.Error
	)
	// The forwarder's request is the only way to build a UDP endpoint bound
	// to a flow; a forwarder per new flow is two words.
	udp.NewForwarder(o.stack, func(r *udp.ForwarderRequest) {
		ep, err = r.CreateEndpoint(&wq)
	}).HandlePacket(id, pkt)
	if err != nil {
		o.log.Warn("overlay: UDP flow endpoint", "src", src, "dst", dst, "err", err.String())
		// fn still runs, with no conn, so that the handler releases what
		// it took for the flow (its slot, its flow-table entry).
		go o.runUDP(src, dst, nil, fn)
		return true
	}
	c := &UDPConn{UDPConn: gonet.NewUDPConn(&wq, ep), ep: ep, wq: &wq}
	go o.runUDP(src, dst, c, fn)
	return true
}

// UDPConn is a UDP flow's conn. Besides net.Conn it can wait for a
// datagram without a buffer (WaitReadable).
type UDPConn struct {
	*gonet.UDPConn
	ep tcpip.Endpoint
	wq *waiter.Queue
}

// WaitReadable blocks until a Read would not block: a datagram is queued,
// or the flow ended. A relay loop waits here, holding no buffer, while its
// flow idles.
func (c *UDPConn) WaitReadable() error { return waitReadable(c.ep, c.wq) }

// askUDP calls the handler, turning a panic into a refusal.
func (o *Overlay) askUDP(src, dst netip.AddrPort) (fn func(net.Conn)) {
	defer func() {
		if p := recover(); p != nil {
			o.log.Error("overlay: panic in UDP handler", "src", src, "dst", dst, "panic", fmt.Sprint(p))
			fn = nil
		}
	}()
	return o.cfg.Handler.UDP(src, dst)
}

// runUDP runs one flow. The conn is closed when fn returns (or panics), which
// releases the endpoint so that a later datagram starts a new flow.
func (o *Overlay) runUDP(src, dst netip.AddrPort, c *UDPConn, fn func(net.Conn)) {
	defer func() {
		if p := recover(); p != nil {
			o.log.Error("overlay: panic in UDP flow", "src", src, "dst", dst, "panic", fmt.Sprint(p))
		}
	}()
	if c == nil {
		fn(nil)
		return
	}
	defer c.Close()
	fn(c)
}
