package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// TCP defaults; see TCPConfig.
const (
	defaultMaxInFlight       = 1024
	defaultKeepAliveIdle     = 60 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 4
	defaultRcvBufDefault     = 1 << 20
	defaultRcvBufMax         = 4 << 20
	defaultSndBufDefault     = 1 << 20
	defaultSndBufMax         = 4 << 20
)

// ErrRequestDone is returned by Accept when the request was already
// accepted or rejected.
var ErrRequestDone = errors.New("overlay: TCP request already completed")

func (c *TCPConfig) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
	if c.MaxInFlightPerSource <= 0 {
		c.MaxInFlightPerSource = max(1, c.MaxInFlight/8)
	}
	if c.KeepAliveIdle <= 0 {
		c.KeepAliveIdle = defaultKeepAliveIdle
	}
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = defaultKeepAliveInterval
	}
	if c.KeepAliveCount <= 0 {
		c.KeepAliveCount = defaultKeepAliveCount
	}
	if c.ReceiveBufferMax <= 0 {
		c.ReceiveBufferMax = defaultRcvBufMax
	}
	if c.ReceiveBufferDefault <= 0 {
		c.ReceiveBufferDefault = min(defaultRcvBufDefault, c.ReceiveBufferMax)
	}
	if c.SendBufferMax <= 0 {
		c.SendBufferMax = defaultSndBufMax
	}
	if c.SendBufferDefault <= 0 {
		c.SendBufferDefault = min(defaultSndBufDefault, c.SendBufferMax)
	}
}

// tcpRequestState is the part of a TCPRequest that the handler goroutine
// and Accept/Reject share.
type tcpRequestState struct {
	o  *Overlay
	fr *tcp.ForwarderRequest

	// mu guards done (Complete must be called exactly once) and conn, the
	// accepted connection, closed if the handler panics.
	mu   sync.Mutex
	done bool
	conn net.Conn
}

// completeLocked completes the forwarder request (releasing its in-flight
// slot, and sending a RST when reset) and the per-source share.
func (st *tcpRequestState) completeLocked(src netip.Addr, reset bool) {
	st.done = true
	st.fr.Complete(reset)
	st.o.inflight.release(src)
}

func (r *TCPRequest) accept() (net.Conn, error) {
	st := r.st
	if st == nil {
		return nil, ErrRequestDone
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return nil, ErrRequestDone
	}
	var wq waiter.Queue
	ep, err := st.fr.CreateEndpoint(&wq)
	if err != nil {
		st.completeLocked(r.Src.Addr(), true)
		return nil, fmt.Errorf("overlay: accept %v -> %v: %v", r.Src, r.Dst, err)
	}
	st.completeLocked(r.Src.Addr(), false)
	st.o.setKeepAlive(ep)
	st.conn = &TCPConn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep, wq: &wq}
	return st.conn, nil
}

// abandon ends an Accept that is still waiting for the client's final ACK:
// the half-open connection is reset, and Accept returns an error at once
// instead of after gVisor's own handshake timeout (two minutes). It is
// for a handler that gives up on a client that never completes (a
// half-open scan).
func (r *TCPRequest) abandon() {
	st := r.st
	if st == nil {
		return
	}
	ep := st.o.stack.FindTransportEndpoint(protoOf(r.Dst.Addr()), tcp.ProtocolNumber, st.fr.ID(), nicID)
	if ep != nil {
		ep.Abort()
	}
}

// TCPConn is an accepted overlay connection. Besides net.Conn it half-closes
// (CloseWrite) and can be aborted.
type TCPConn struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
	wq *waiter.Queue
}

// readyEvents are what ends a wait for reading: data, the peer's FIN, an
// error, or the connection closed.
const readyEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// WaitReadable blocks until a Read would not block: data or an end is
// there. A copy loop waits here, holding no buffer, while its flow idles.
func (c *TCPConn) WaitReadable() error { return waitReadable(c.ep, c.wq) }

// waitReadable waits on ep's queue until it reports readyEvents.
func waitReadable(ep tcpip.Endpoint, wq *waiter.Queue) error {
	if ep.Readiness(readyEvents) != 0 {
		return nil
	}
	e, ch := waiter.NewChannelEntry(readyEvents)
	wq.EventRegister(&e)
	defer wq.EventUnregister(&e)
	for ep.Readiness(readyEvents) == 0 {
		<-ch
	}
	return nil
}

// Abort closes the connection with a TCP reset instead of a FIN, so the
// client sees it cut off (a revoked flow), not finished.
func (c *TCPConn) Abort() error {
	c.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	return c.Close()
}

func (r *TCPRequest) reject() {
	st := r.st
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.done {
		st.completeLocked(r.Src.Addr(), true)
	}
}

func (o *Overlay) setKeepAlive(ep tcpip.Endpoint) {
	tc := o.cfg.TCP
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(tc.KeepAliveIdle)
	intvl := tcpip.KeepaliveIntervalOption(tc.KeepAliveInterval)
	if err := ep.SetSockOpt(&idle); err != nil {
		o.log.Debug("overlay: keepalive idle", "err", err.String())
	}
	if err := ep.SetSockOpt(&intvl); err != nil {
		o.log.Debug("overlay: keepalive interval", "err", err.String())
	}
	if err := ep.SetSockOptInt(tcpip.KeepaliveCountOption, tc.KeepAliveCount); err != nil {
		o.log.Debug("overlay: keepalive count", "err", err.String())
	}
}

// tcpPacketHandler is the stack's handler for TCP segments that no endpoint
// took: new SYNs, and strays. While a source has its whole in-flight share
// waiting for the handler, its SYNs are reset here, before the forwarder
// starts a goroutine and holds a copy of each: a SYN flood from one peer
// then costs the gateway little more than its packets and one reset each.
func (o *Overlay) tcpPacketHandler(fwd *tcp.Forwarder) func(stack.TransportEndpointID, *stack.PacketBuffer) bool {
	return func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if !o.inflight.full(addrPortOf(id.RemoteAddress, 0).Addr()) {
			return fwd.HandlePacket(id, pkt)
		}
		if th := header.TCP(pkt.TransportHeader().Slice()); len(th) >= header.TCPMinimumSize && th.Flags() == header.TCPFlagSyn {
			o.link.inject(resetFor(id, th.SequenceNumber()))
		}
		return true // consumed: the stack answers nothing more
	}
}

// resetFor builds the RST+ACK that refuses a SYN with sequence number seq
// on the connection id (seen from the stack: local is the SYN's
// destination).
func resetFor(id stack.TransportEndpointID, seq uint32) []byte {
	v4 := id.LocalAddress.Len() == header.IPv4AddressSize
	ipLen := header.IPv6MinimumSize
	if v4 {
		ipLen = header.IPv4MinimumSize
	}
	b := make([]byte, ipLen+header.TCPMinimumSize)
	if v4 {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         replyHopLimit,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     id.LocalAddress,
			DstAddr:     id.RemoteAddress,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     header.TCPMinimumSize,
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          replyHopLimit,
			SrcAddr:           id.LocalAddress,
			DstAddr:           id.RemoteAddress,
		})
	}
	t := header.TCP(b[ipLen:])
	t.Encode(&header.TCPFields{
		SrcPort:    id.LocalPort,
		DstPort:    id.RemotePort,
		AckNum:     seq + 1,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlagRst | header.TCPFlagAck,
	})
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, id.LocalAddress, id.RemoteAddress, header.TCPMinimumSize)
	t.SetChecksum(^t.CalculateChecksum(sum))
	return b
}

// handleTCP runs in the forwarder's goroutine for each new SYN. Whatever the
// handler does (returns early, panics), the request is completed.
func (o *Overlay) handleTCP(fr *tcp.ForwarderRequest) {
	id := fr.ID()
	src := addrPortOf(id.RemoteAddress, id.RemotePort)
	dst := addrPortOf(id.LocalAddress, id.LocalPort)
	if !o.inflight.acquire(src.Addr()) {
		fr.Complete(true)
		o.log.Debug("overlay: TCP in-flight share exceeded, reset", "src", src, "dst", dst)
		return
	}
	req := &TCPRequest{Src: src, Dst: dst, st: &tcpRequestState{o: o, fr: fr}}
	defer req.reject() // no-op when the handler completed it
	defer func() {
		if p := recover(); p != nil {
			o.log.Error("overlay: panic in TCP handler", "src", src, "dst", dst, "panic", fmt.Sprint(p))
			req.st.mu.Lock()
			c := req.st.conn
			req.st.mu.Unlock()
			if c != nil {
				c.Close() // the flow ends with its handler
			}
		}
	}()
	o.cfg.Handler.TCP(req)
}

// sourceLimiter counts in-flight handshakes per source address.
type sourceLimiter struct {
	limit int

	// mu guards n.
	mu sync.Mutex
	n  map[netip.Addr]int
}

func (l *sourceLimiter) acquire(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[a] >= l.limit {
		return false
	}
	if l.n == nil {
		l.n = make(map[netip.Addr]int)
	}
	l.n[a]++
	return true
}

// full reports whether a has its whole share in flight.
func (l *sourceLimiter) full(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[a] >= l.limit
}

func (l *sourceLimiter) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[a] <= 1 {
		delete(l.n, a)
		return
	}
	l.n[a]--
}
