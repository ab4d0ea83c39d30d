package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Peer is one WireGuard peer. AllowedIPs are what cryptokey routing binds to
// its key: a packet from the peer whose source is outside them is dropped by
// the device, which is what makes "source address = identity" true.
type Peer struct {
	PublicKey           wgkey.Public
	AllowedIPs          []netip.Prefix
	Endpoint            netip.AddrPort // zero: learnt from the peer's first handshake
	PersistentKeepalive time.Duration  // zero: off
}

// PeerStats is the device's view of one peer.
type PeerStats struct {
	PublicKey     wgkey.Public
	Endpoint      netip.AddrPort
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
}

// TCPRequest is a new TCP connection attempt (a SYN) seen by the stack. The
// handler must call exactly one of Accept or Reject; if it returns without
// either, the overlay rejects it (the forwarder's in-flight slot is always
// released).
type TCPRequest struct {
	Src, Dst netip.AddrPort

	st *tcpRequestState // nil for a request not made by the overlay
}

// Reject resets the connection at once: the client sees "connection refused".
func (r *TCPRequest) Reject() { r.reject() }

// Abandon, called while Accept waits for the client's final ACK, resets the
// half-open connection so that Accept returns an error at once.
func (r *TCPRequest) Abandon() { r.abandon() }

// Handler receives new flows. Both funcs must be set.
type Handler struct {
	// TCP runs in its own goroutine per SYN and may block (to dial a backend).
	TCP func(r *TCPRequest)
	// UDP is called synchronously on the packet path for the first datagram
	// of a new (src, dst) flow and must not block. Returning nil refuses the
	// flow with ICMP port unreachable. Otherwise the returned func always
	// runs, in its own goroutine, with a conn bound to the flow (Read/Write
	// datagrams to and from src as dst); closing the conn ends the flow and
	// releases it so a later datagram starts a new flow. When the stack
	// cannot give the flow an endpoint, the func runs with a nil conn, so
	// that the handler can release what it took for the flow.
	UDP func(src, dst netip.AddrPort) func(c net.Conn)
	// Ping is asked whether an ICMP echo request from src to dst may be
	// answered; dst may be any address (service VIPs). The gateway's own
	// address is always answered. nil: only the gateway's own address.
	Ping func(src, dst netip.Addr) bool
	// Route is asked, on the packet path, about the first packet of a flow
	// (a TCP SYN, a UDP datagram) that is not already relayed. Returning
	// true relays the flow: its packets both ways bypass the stack and go
	// back out through WireGuard to the peer whose AllowedIPs hold their
	// destination (see relay.go). Route must set r.OnEnd before returning
	// true, and must not block. false leaves the packet to the stack (TCP,
	// UDP above). nil: nothing is relayed.
	Route func(r *Relay) bool
}

// TCP keepalive defaults, for the overlay's accepted connections and for
// the gateway's backend sockets alike: both ends of a spliced flow notice a
// vanished peer after the same 60s + 4 x 15s.
const (
	DefaultKeepAliveIdle     = 60 * time.Second
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultKeepAliveCount    = 4
)

// TCPConfig tunes the stack's TCP.
type TCPConfig struct {
	// MaxInFlight bounds TCP handshakes being set up at once (SYNs handed to
	// the handler and not yet accepted or rejected). Default 1024.
	MaxInFlight int
	// MaxInFlightPerSource bounds those per source address, so one peer
	// cannot use them all; a SYN over the share is reset. Default
	// MaxInFlight/8.
	MaxInFlightPerSource int

	// Keepalive on accepted connections: probes start after KeepAliveIdle
	// without traffic, are sent every KeepAliveInterval, and the
	// connection is dropped after KeepAliveCount unanswered probes.
	// Defaults: DefaultKeepAliveIdle, DefaultKeepAliveInterval,
	// DefaultKeepAliveCount.
	KeepAliveIdle     time.Duration
	KeepAliveInterval time.Duration
	KeepAliveCount    int

	// Per-connection buffer ranges in bytes. The receive buffer starts at
	// ReceiveBufferDefault (default 1 MiB) and is auto-tuned up to
	// ReceiveBufferMax (default 4 MiB); the send buffer likewise
	// (SendBufferDefault 1 MiB, SendBufferMax 4 MiB). The maxima bound a
	// busy connection's memory and a single flow's rate to about
	// max/RTT (4 MiB at 20 ms: 1.6 Gb/s); see the package documentation
	// for the measurements behind the defaults.
	ReceiveBufferDefault, ReceiveBufferMax int
	SendBufferDefault, SendBufferMax       int

	// CongestionControl is "reno" or "cubic"; empty keeps gVisor's default.
	CongestionControl string
}

// Config configures an Overlay. Zero values take the documented defaults.
type Config struct {
	PrivateKey wgkey.Private
	// Bind is the UDP transport; nil means real UDP sockets on ListenPort
	// (conn.NewDefaultBind). Tests pass an in-memory bind.
	Bind       conn.Bind
	ListenPort uint16     // 0: any free port (see Port)
	Address    netip.Addr // the gateway's overlay address (DNS, site links)
	MTU        int        // default 1420
	TCP        TCPConfig
	Handler    Handler
	Logger     *slog.Logger // operational log; nil discards
	// HeapBudget is the heap, in bytes, above which the device drops the
	// data packets it receives (handshakes still pass) until the gateway
	// has worked through what it holds (heapgate.go); 0 is
	// DefaultHeapBudget.
	HeapBudget uint64
}

// DefaultHeapBudget is Config.HeapBudget's default: 1 GiB.
const DefaultHeapBudget = 1 << 30

// Overlay is a running WireGuard device and its gVisor stack.
type Overlay struct {
	cfg      Config
	log      *slog.Logger
	link     *link
	stack    *stack.Stack
	dev      *device.Device
	inflight *sourceLimiter
	gate     *heapGate
	port     uint16

	// peersMu guards peers, the set last given to the device, and
	// peersUnknown, set when an update failed part-way.
	peersMu      sync.Mutex
	peers        map[wgkey.Public]Peer
	peersUnknown bool

	closeOnce sync.Once
}

// HeapBudgetDrops counts the batches of WireGuard packets dropped because
// the heap was over its budget (Config.HeapBudget): received batches whose
// data packets were dropped, and outbound batches.
func (o *Overlay) HeapBudgetDrops() uint64 { return o.gate.drops.Load() }

// Port returns the UDP port the device listens on.
func (o *Overlay) Port() uint16 { return o.port }

// SetPeers makes the device's peers exactly peers: peers whose key is
// unchanged and whose settings are unchanged keep their sessions untouched;
// changed ones are updated in place; missing ones are removed.
func (o *Overlay) SetPeers(peers []Peer) error {
	o.peersMu.Lock()
	defer o.peersMu.Unlock()
	return o.setPeersLocked(peers)
}

// SetPrivateKey changes the device's key (a gateway key rotation). Every
// session ends; peers must know the new public key to handshake again.
func (o *Overlay) SetPrivateKey(k wgkey.Private) error {
	if err := o.dev.IpcSet("private_key=" + k.Hex() + "\n"); err != nil {
		return fmt.Errorf("overlay: set private key: %w", err)
	}
	return nil
}

// Knock starts a handshake with each peer that has no session and whose
// endpoint is known (a keepalive makes the device initiate one), so that a
// restarted gateway re-establishes its clients' sessions itself instead of
// waiting for them to notice, which takes a WireGuard client 5 to 15 s.
func (o *Overlay) Knock(keys ...wgkey.Public) {
	for _, k := range keys {
		if p := o.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
			p.SendKeepalive()
		}
	}
}

// Peers returns the device's peer statistics.
func (o *Overlay) Peers() []PeerStats {
	dump, err := o.dev.IpcGet()
	if err != nil {
		o.log.Warn("overlay: read device state", "err", err)
		return nil
	}
	st, err := parsePeerStats(dump)
	if err != nil {
		o.log.Warn("overlay: parse device state", "err", err)
	}
	return st
}

// DialTCPFrom opens a TCP connection inside the overlay from src (any
// address: the stack spoofs; port 0 picks one) to dst. A site gateway uses
// it to carry a LAN device's flow to another site from the device's own
// overlay address, so the serving site identifies the device, not the
// gateway.
func (o *Overlay) DialTCPFrom(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	src, dst, err := sameFamily(src, dst)
	if err != nil {
		return nil, err
	}
	return gonet.DialTCPWithBind(ctx, o.stack, fullAddr(src), fullAddr(dst), protoOf(dst.Addr()))
}

// DialUDPFrom is DialTCPFrom for UDP: a conn that sends datagrams from src
// to dst and reads the replies.
func (o *Overlay) DialUDPFrom(src, dst netip.AddrPort) (net.Conn, error) {
	src, dst, err := sameFamily(src, dst)
	if err != nil {
		return nil, err
	}
	la, ra := fullAddr(src), fullAddr(dst)
	return gonet.DialUDP(o.stack, &la, &ra, protoOf(dst.Addr()))
}

func sameFamily(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if src.Addr().Is4() != dst.Addr().Is4() {
		return src, dst, fmt.Errorf("overlay: dial %v from %v: address families differ", dst, src)
	}
	return src, dst, nil
}

// Relays is the number of flows being relayed.
func (o *Overlay) Relays() int { return o.link.relay.len() }

// Close stops the device and the stack; live flows' conns return errors.
func (o *Overlay) Close() error {
	o.closeOnce.Do(o.close)
	return nil
}
