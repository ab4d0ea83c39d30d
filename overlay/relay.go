package overlay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Relayed flows. A flow from one peer to an address another peer serves
// (a service at another site) is not terminated in the stack. Handler.Route
// decides it on its first packet; from then on its packets, both ways, go
// from the device's write side straight back to its read side, and the
// device encrypts each to the peer whose AllowedIPs hold its destination.
// Nothing is rewritten but a SYN's MSS option: the serving site sees the
// client's own addresses, and cryptokey routing tells it which peer vouches
// for them.
//
// The table admits only what Route allowed: a packet of a flow that is not
// in it goes to the stack as before, which answers anything but a new
// connection with a reset and never forwards. So a site peer cannot reach a
// client except with replies to a flow the client's gateway relayed.

// Relay timing.
const relayTick = 250 * time.Millisecond // coarse clock and sweep period

// relayFinLinger is how long a TCP flow stays after both sides sent FIN, so
// that the last ACKs and retransmissions still pass; a variable for tests.
var relayFinLinger = 2 * time.Second

const (
	// DefaultRelayIdle ends a relay that saw no packet for this long when
	// the handler set no Idle.
	DefaultRelayIdle = 2 * time.Minute
)

// Why a relay ended (RelayEnd.Reason).
const (
	RelayClosed  = ""        // both sides finished (FIN)
	RelayReset   = "reset"   // one end reset the connection (TCP RST)
	RelayIdle    = "idle"    // no packet for Idle
	RelayAborted = "aborted" // Abort or Close: the gateway ended it
	RelayStopped = "stopped" // the overlay closed
)

// RelayEnd is what a relay reports when it ends.
type RelayEnd struct {
	// BytesIn is transport payload from Src towards Dst, BytesOut back.
	BytesIn, BytesOut int64
	Reason            string
}

// Relay is one relayed flow, as its first packet described it: Src is the
// client, Dst the address it asked for. Route sets Idle and OnEnd before
// returning true; after that, only the overlay writes to it.
type Relay struct {
	Src, Dst netip.AddrPort
	Proto    uint8 // 6 (TCP) or 17 (UDP)

	// Idle ends the relay after this long without a packet either way
	// (zero: DefaultRelayIdle).
	Idle time.Duration
	// OnEnd is called once when the relay ends, from the packet path or the
	// sweeper: it must not block. A TCP flow whose two sides both sent FIN
	// has ended: OnEnd runs then, although its entry stays a little longer
	// (relayFinLinger) so that the last ACKs still pass.
	OnEnd func(RelayEnd)

	t   *relayTable
	key flowKey

	last  atomic.Int64    // relayTable.now at the last packet
	bytes [2]atomic.Int64 // payload bytes, by direction (0: from Src)
	// next is, per direction, the sequence number that side sends next
	// (TCP): what a reset must carry to be accepted by the other side.
	next  [2]atomic.Uint32
	seen  [2]atomic.Bool // next is known
	fin   [2]atomic.Bool
	ended atomic.Bool
	once  sync.Once
}

// Bytes returns the payload bytes so far: from Src, and back to it.
func (r *Relay) Bytes() (in, out int64) { return r.bytes[0].Load(), r.bytes[1].Load() }

// Abort ends the relay now. A TCP flow's two ends each get a reset, so the
// client sees the connection cut at once and the serving site frees it.
func (r *Relay) Abort() error {
	if r.ended.Load() {
		return nil
	}
	if r.Proto == protoTCP {
		if r.seen[1].Load() {
			r.t.inject(buildRST(r.Dst, r.Src, r.next[1].Load()))
		}
		if r.seen[0].Load() {
			r.t.inject(buildRST(r.Src, r.Dst, r.next[0].Load()))
		}
	}
	r.end(RelayAborted)
	return nil
}

// Close is Abort, so that a relay can sit among a flow's connections.
func (r *Relay) Close() error { return r.Abort() }

// end takes r out of the table and reports its end, once.
func (r *Relay) end(reason string) {
	r.ended.Store(true)
	r.t.remove(r)
	r.report(reason)
}

// report calls OnEnd, once.
func (r *Relay) report(reason string) {
	r.once.Do(func() {
		if r.OnEnd != nil {
			in, out := r.Bytes()
			r.OnEnd(RelayEnd{BytesIn: in, BytesOut: out, Reason: reason})
		}
	})
}

func (r *Relay) idle() time.Duration {
	if r.Idle > 0 {
		return r.Idle
	}
	return DefaultRelayIdle
}

// flowKey names a relayed flow in the direction of its first packet.
type flowKey struct {
	src, dst netip.AddrPort
	proto    uint8
}

// relayTable holds the relayed flows of one overlay.
type relayTable struct {
	route  func(r *Relay) bool // Handler.Route; nil: nothing is relayed
	inject func(pkt []byte)    // queue a packet built here (never waits)
	mtu    int

	now  atomic.Int64 // coarse clock, in relayTicks since start
	size atomic.Int32 // len(flows), read without the lock

	// mu guards flows.
	mu    sync.RWMutex
	flows map[flowKey]*Relay

	stop chan struct{}
	done chan struct{}
}

func newRelayTable(route func(*Relay) bool, inject func([]byte), mtu int) *relayTable {
	t := &relayTable{
		route: route, inject: inject, mtu: mtu,
		flows: make(map[flowKey]*Relay),
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	go t.sweep()
	return t
}

// handle takes b when it belongs to a relayed flow, or starts one when
// Route allows, and returns the packet to pass on to the device (b up to
// its IP length, its MSS clamped); ok false leaves b to the stack. The
// caller passes packets on in batches (link.Write), so that the device
// reads and encrypts them in batches too.
func (t *relayTable) handle(b []byte) (fwd []byte, ok bool) {
	if t.route == nil && t.size.Load() == 0 {
		return nil, false
	}
	p, ok := parsePacket(b)
	if !ok {
		return nil, false
	}
	if p.proto != protoTCP && p.proto != protoUDP {
		if p.isICMPError() && t.relayICMPError(b, &p) {
			return b[:p.end], true
		}
		return nil, false
	}
	r, dir := t.lookup(p.src, p.dst, p.proto)
	if r != nil && dir == 0 && p.proto == protoTCP && p.flags&(tcpSYN|tcpACK) == tcpSYN && r.finished() {
		r.end(RelayClosed) // the client reuses the ports of a finished flow
		r = nil
	}
	if r == nil {
		if !t.isNewFlow(&p) {
			return nil, false
		}
		if r = t.open(&p); r == nil {
			return nil, false
		}
	}
	r.forward(b[:p.end], dir, &p)
	return b[:p.end], true
}

// isNewFlow: a TCP SYN, or any UDP datagram not in the table.
func (t *relayTable) isNewFlow(p *packet) bool {
	if t.route == nil {
		return false
	}
	return p.proto == protoUDP || p.flags&(tcpSYN|tcpACK|tcpRST|tcpFIN) == tcpSYN
}

// lookup finds p's flow in either direction: dir 0 is from the client.
func (t *relayTable) lookup(src, dst netip.AddrPort, proto uint8) (*Relay, int) {
	if t.size.Load() == 0 {
		return nil, 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if r := t.flows[flowKey{src, dst, proto}]; r != nil {
		return r, 0
	}
	if r := t.flows[flowKey{dst, src, proto}]; r != nil {
		return r, 1
	}
	return nil, 0
}

// open asks Route about a new flow and enters it when allowed.
func (t *relayTable) open(p *packet) *Relay {
	r := &Relay{Src: p.src, Dst: p.dst, Proto: p.proto, t: t, key: flowKey{p.src, p.dst, p.proto}}
	if !t.route(r) {
		return nil
	}
	r.last.Store(t.now.Load())
	t.mu.Lock()
	old := t.flows[r.key]
	t.flows[r.key] = r
	if old == nil {
		t.size.Add(1)
	}
	t.mu.Unlock()
	if old != nil { // a lingering finished flow, or a race: the newer wins
		old.ended.Store(true)
		old.report(RelayClosed)
	}
	return r
}

func (t *relayTable) remove(r *Relay) {
	t.mu.Lock()
	if t.flows[r.key] == r {
		delete(t.flows, r.key)
		t.size.Add(-1)
	}
	t.mu.Unlock()
}

// forward accounts for one packet of r that is passed on, tracking what a
// reset and the flow's end need.
func (r *Relay) forward(b []byte, dir int, p *packet) {
	r.last.Store(r.t.now.Load())
	if p.proto == protoTCP {
		r.trackTCP(b, dir, p)
	} else {
		r.bytes[dir].Add(int64(p.payload))
	}
	if p.proto == protoTCP && p.flags&tcpRST != 0 {
		r.end(RelayReset)
	}
}

// trackTCP clamps a SYN's MSS and advances dir's next sequence number.
// Bytes count sequence space newly covered, so retransmissions are not
// counted twice.
func (r *Relay) trackTCP(b []byte, dir int, p *packet) {
	flags := uint32(0)
	if p.flags&tcpSYN != 0 {
		clampMSS(b, p, r.t.maxMSS(p.v6))
		flags++
	}
	if p.flags&tcpFIN != 0 {
		flags++
		r.fin[dir].Store(true)
		if r.finished() {
			r.report(RelayClosed) // the flow is over; the entry lingers
		}
	}
	next := p.seq + uint32(p.payload) + flags
	switch prev := r.next[dir].Load(); {
	case !r.seen[dir].Load():
		r.bytes[dir].Add(int64(p.payload))
	case int32(next-prev) > 0:
		r.bytes[dir].Add(int64(min(next-prev, uint32(p.payload))))
	default:
		return // a retransmission or a pure ACK
	}
	r.next[dir].Store(next)
	r.seen[dir].Store(true)
}

// finished reports whether both sides of a TCP flow sent FIN.
func (r *Relay) finished() bool { return r.fin[0].Load() && r.fin[1].Load() }

// maxMSS is the largest TCP segment that fits the overlay's MTU.
func (t *relayTable) maxMSS(v6 bool) uint16 {
	if v6 {
		return uint16(t.mtu - ipv6Header - tcpHeaderMin)
	}
	return uint16(t.mtu - ipv4HeaderMin - tcpHeaderMin)
}

// relayICMPError says whether to pass on an ICMP error about a relayed
// flow: when it comes from the other end of that flow and goes to the end
// it quotes. Any other is left to the stack's inbound filter.
func (t *relayTable) relayICMPError(b []byte, p *packet) bool {
	q, ok := p.quoted(b)
	if !ok {
		return false
	}
	r, dir := t.lookup(q.src, q.dst, q.proto)
	if r == nil {
		return false
	}
	// The quoted packet went from one end to the other; the error comes
	// back from the far end to the sender.
	from, to := r.Dst.Addr(), r.Src.Addr()
	if dir == 1 {
		from, to = to, from
	}
	return p.src.Addr() == from && p.dst.Addr() == to
}

// sweep advances the coarse clock and ends idle and finished relays.
func (t *relayTable) sweep() {
	defer close(t.done)
	tick := time.NewTicker(relayTick)
	defer tick.Stop()
	var ended []*Relay
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		now := t.now.Add(1)
		ended = ended[:0]
		t.mu.RLock()
		for _, r := range t.flows {
			quiet := time.Duration(now-r.last.Load()) * relayTick
			if quiet >= r.idle() || (r.finished() && quiet >= relayFinLinger) {
				ended = append(ended, r)
			}
		}
		t.mu.RUnlock()
		for _, r := range ended {
			reason := RelayIdle
			if r.finished() {
				reason = RelayClosed
			}
			r.end(reason)
		}
	}
}

// close stops the sweeper and ends every relay.
func (t *relayTable) close() {
	close(t.stop)
	<-t.done
	t.mu.RLock()
	all := make([]*Relay, 0, len(t.flows))
	for _, r := range t.flows {
		all = append(all, r)
	}
	t.mu.RUnlock()
	for _, r := range all {
		r.end(RelayStopped)
	}
}

// len is the number of relayed flows.
func (t *relayTable) len() int { return int(t.size.Load()) }
