package overlay

import (
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// outboundQueueLen bounds the packets the stack has written that the
// WireGuard device has not read yet. When it is full, the stack's writers
// wait (back-pressure) instead of dropping, so that a fast TCP sender is
// paced by encryption rather than by loss.
const outboundQueueLen = 1024

// linkBatchSize is the device's batch size; a variable so that benchmarks
// can compare it with 1.
var linkBatchSize = conn.IdealBatchSize

// linkGRO turns GRO on inbound batches on; a variable so that benchmarks can
// compare.
var linkGRO = true

// gsoMode is the segmentation offload the link offers the stack.
type gsoMode int

const (
	gsoNone   gsoMode = iota // TCP sends MSS-sized segments
	gsoGVisor                // TCP works on 64 KiB segments, splits them itself before the link
	gsoHost                  // TCP hands the link 64 KiB segments; Read splits them (splitGSO)
)

// linkGSO is the GSO mode of new links; a variable so that benchmarks can
// compare.
var linkGSO = gsoHost

// link is both ends of the pipe between the WireGuard device and the gVisor
// stack: it is the device's tun.Device and the stack's stack.LinkEndpoint.
//
//	device --Write(bufs)--> link --DeliverNetworkPacket--> stack   (inbound)
//	device <--Read(bufs)--- link <--WritePackets---------- stack   (outbound)
//
// Packets move in batches: Read drains up to BatchSize (conn.IdealBatchSize,
// 128) queued packets per call without waiting for more, and Write runs a
// whole batch through one GRO engine and flushes it before returning.
// Outbound, the link advertises host GSO (linkGSO): TCP hands it 64 KiB
// segments, one queue entry each, and Read splits them into MTU-sized
// packets across the bufs it fills (splitGSO), so a segment costs one
// queue hop, not forty. Why this is the default is measured in
// docs/DEVELOPERS.md ("overlay throughput").
type link struct {
	mtu       uint32
	batch     int
	gso       gsoMode
	out       chan *stack.PacketBuffer
	events    chan tun.Event
	done      chan struct{}
	intercept func(pkt []byte) bool // inbound hook (ICMP echo); true: consumed
	relay     *relayTable           // relayed flows; nil: none
	gate      *heapGate             // the heap budget; nil: none

	// pending is a host-GSO packet that Read has split only partly, and
	// pendingSeg the next segment to write. Only Read uses them, and
	// wireguard-go calls Read from one goroutine.
	pending    *stack.PacketBuffer
	pendingSeg int

	// groPool holds GRO engines: one per concurrent Write (wireguard-go
	// writes from one goroutine per peer). An engine is empty between
	// Writes. relayedPool holds the lists in which a Write gathers the
	// packets it relays.
	groPool     sync.Pool
	relayedPool sync.Pool

	closeOnce sync.Once

	// mu guards dispatcher, which the stack sets with Attach.
	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
}

// tunSide is the link seen from the WireGuard device. It is a separate
// type because tun.Device and stack.LinkEndpoint both have MTU and Close
// methods with different signatures.
type tunSide link

var (
	_ tun.Device         = (*tunSide)(nil)
	_ stack.LinkEndpoint = (*link)(nil)
	_ stack.GSOEndpoint  = (*link)(nil)
)

func newLink(mtu int) *link {
	l := &link{
		mtu:    uint32(mtu),
		batch:  linkBatchSize,
		gso:    linkGSO,
		out:    make(chan *stack.PacketBuffer, outboundQueueLen),
		events: make(chan tun.Event, 1),
		done:   make(chan struct{}),
	}
	groOn := linkGRO
	l.relayedPool.New = func() any {
		s := make([]*stack.PacketBuffer, 0, linkBatchSize)
		return &s
	}
	l.groPool.New = func() any {
		g := new(gro.GRO)
		g.Init(groOn)
		return g
	}
	l.events <- tun.EventUp
	return l
}

// --- tun.Device (the WireGuard side) ---

func (l *tunSide) File() *os.File           { return nil }
func (l *tunSide) Name() (string, error)    { return "wardgate", nil }
func (l *tunSide) MTU() (int, error)        { return int(l.mtu), nil }
func (l *tunSide) Events() <-chan tun.Event { return l.events }
func (l *tunSide) BatchSize() int           { return l.batch }

// Read blocks for the first outbound packet, then takes whatever else is
// queued, up to BatchSize packets, without blocking again. Host-GSO
// packets are split into MTU-sized packets here; what does not fit in this
// batch is kept for the next Read. Over the heap budget the batch is
// dropped, as a NIC drops on a full transmit queue: wireguard-go would
// hold each packet in a 64 KiB buffer, up to 128 batches per peer while
// the peer has no session (heapgate.go); TCP sends it again.
func (l *tunSide) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := l.read(bufs, sizes, offset)
	if n > 0 && l.gate != nil && l.gate.over() {
		l.gate.drops.Add(1)
		return 0, err
	}
	return n, err
}

func (l *tunSide) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	limit := min(len(bufs), l.batch)
	n := 0
	if l.pending != nil {
		f, next := splitGSO(l.pending, l.pendingSeg, bufs[:limit], sizes, offset)
		n += f
		if next != 0 {
			l.pendingSeg = next
			return n, nil
		}
		l.pending.DecRef()
		l.pending = nil
	}
	for n < limit {
		var pkt *stack.PacketBuffer
		if n == 0 {
			select {
			case pkt = <-l.out:
			case <-l.done:
				return 0, os.ErrClosed
			}
		} else {
			select {
			case pkt = <-l.out:
			default:
				return n, nil
			}
		}
		if t := pkt.GSOOptions.Type; t == stack.GSOTCPv4 || t == stack.GSOTCPv6 {
			f, next := splitGSO(pkt, 0, bufs[n:limit], sizes[n:], offset)
			n += f
			if next != 0 {
				l.pending, l.pendingSeg = pkt, next
				return n, nil
			}
		} else if sz, ok := copyPacket(bufs[n][offset:], pkt); ok {
			sizes[n] = sz
			n++
		}
		pkt.DecRef()
	}
	return n, nil
}

// copyPacket copies pkt into dst; false when it does not fit (dropped).
func copyPacket(dst []byte, pkt *stack.PacketBuffer) (int, bool) {
	if pkt.Size() > len(dst) {
		return 0, false
	}
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(dst[n:], s)
	}
	return n, true
}

// Write hands decrypted packets from peers to the stack. A batch (the
// packets wireguard-go decrypted for one peer in one go) goes through
// gVisor's GRO, which coalesces consecutive segments of a TCP flow into one
// larger packet, so the stack's TCP runs once per coalesced packet instead
// of once per segment. The batch is flushed before Write returns: nothing
// waits for a timer.
func (l *tunSide) Write(bufs [][]byte, offset int) (int, error) {
	l.mu.RLock()
	d := l.dispatcher
	l.mu.RUnlock()
	if d == nil {
		return len(bufs), nil
	}
	g := l.groPool.Get().(*gro.GRO)
	g.Dispatcher = d
	relayed := l.relayedPool.Get().(*[]*stack.PacketBuffer)
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		if l.relay != nil {
			if fwd, ok := l.relay.handle(pkt); ok {
				*relayed = append(*relayed, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(fwd)}))
				continue
			}
		}
		if l.intercept != nil && l.intercept(pkt) {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch pkt[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			continue
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		pb.NetworkProtocolNumber = proto
		g.Enqueue(pb)
		pb.DecRef()
	}
	g.Flush()
	g.Dispatcher = nil
	l.groPool.Put(g)
	(*link)(l).forward(*relayed)
	clear(*relayed)
	*relayed = (*relayed)[:0]
	l.relayedPool.Put(relayed)
	return len(bufs), nil
}

// Close is called by the WireGuard device when it closes.
func (l *tunSide) Close() error {
	(*link)(l).shutdown()
	return nil
}

func (l *link) shutdown() {
	l.closeOnce.Do(func() {
		close(l.done)
		close(l.events)
	})
}

// inject queues a packet built outside the stack (an ICMP echo reply) for
// the device. It never blocks: when the queue is full the packet is dropped.
func (l *link) inject(b []byte) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	select {
	case l.out <- pb:
	default:
		pb.DecRef()
	}
}

// forward queues one Write's relayed packets for the device, together
// after the batch, so that the device's reader finds them together and
// encrypts and sends them as a batch. Like the stack's own writes it waits
// while the queue is full, so a fast relayed flow is paced by encryption,
// not by loss; it drops once the link is closed.
func (l *link) forward(pkts []*stack.PacketBuffer) {
	for i, pb := range pkts {
		select {
		case l.out <- pb:
		case <-l.done:
			for _, pb := range pkts[i:] {
				pb.DecRef()
			}
			return
		}
	}
}

// --- stack.LinkEndpoint (the gVisor side) ---

func (l *link) SetMTU(mtu uint32)                       {}
func (l *link) MaxHeaderLength() uint16                 { return 0 }
func (l *link) LinkAddress() tcpip.LinkAddress          { return "" }
func (l *link) SetLinkAddress(tcpip.LinkAddress)        {}
func (l *link) Wait()                                   {}
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (l *link) AddHeader(*stack.PacketBuffer)           {}
func (l *link) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (l *link) SetOnCloseAction(func())                 {}
func (l *link) MTU() uint32                             { return l.mtu }

// Close is called when the stack removes the NIC.
func (l *link) Close() { l.shutdown() }

// Capabilities: packets from the device were authenticated by WireGuard,
// which is a stronger check than the transport checksum, so the stack skips
// verifying it (RX checksum offload). Checksums on outbound packets are
// still computed: the peer verifies them.
func (l *link) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// SupportedGSO: with gVisor GSO, TCP builds segments of up to 64 KiB and
// splits them into MSS-sized packets just before handing them to the link,
// so its per-segment work (window, timers, retransmit queue) is done once
// per 64 KiB rather than once per packet. With host GSO it hands the link
// the 64 KiB segment with a partial checksum, and Read splits it
// (splitGSO), so the stack's IP layer and the outbound queue also see one
// packet per 64 KiB.
func (l *link) SupportedGSO() stack.SupportedGSO {
	switch l.gso {
	case gsoGVisor:
		return stack.GVisorGSOSupported
	case gsoHost:
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize is the largest segment TCP builds under GSO.
func (l *link) GSOMaxSize() uint32 {
	if l.gso == gsoHost {
		return hostGSOMaxSize
	}
	return stack.GVisorGSOMaxSize
}

func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// WritePackets queues the stack's outbound packets for the device. It waits
// while the queue is full and drops once the link is closed.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		pkt.IncRef()
		select {
		case l.out <- pkt:
			n++
		case <-l.done:
			pkt.DecRef()
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		}
	}
	return n, nil
}
