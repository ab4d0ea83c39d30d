// Package overlay terminates WireGuard peers into a userspace gVisor network
// stack that it owns: a wireguard-go device whose tun.Device is a gVisor link
// endpoint, promiscuous TCP and UDP forwarders that hand every new flow to a
// callback with its source and destination, ICMP echo, peer-set updates, and
// dialing/listening inside the overlay.
//
// overlay knows nothing of policy: the callbacks decide.
package overlay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Key is a WireGuard key (32 bytes).
type Key [32]byte

// Peer is one WireGuard peer. AllowedIPs are what cryptokey routing binds to
// its key: a packet from the peer whose source is outside them is dropped by
// the device, which is what makes "source address = identity" true.
type Peer struct {
	PublicKey           Key
	AllowedIPs          []netip.Prefix
	Endpoint            netip.AddrPort // zero: learnt from the peer's first handshake
	PersistentKeepalive time.Duration  // zero: off
}

// PeerStats is the device's view of one peer.
type PeerStats struct {
	PublicKey     Key
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
	// implementation fields
}

// Accept completes the handshake with the client and returns the
// connection. Call it only after the backend accepted, so a dead backend
// looks dead to the client. The conn supports CloseWrite (half-close) and
// deadlines.
func (r *TCPRequest) Accept() (net.Conn, error) { panic("TODO") }

// Reject resets the connection at once: the client sees "connection refused".
func (r *TCPRequest) Reject() { panic("TODO") }

// Handler receives new flows. Both funcs must be set.
type Handler struct {
	// TCP runs in its own goroutine per SYN and may block (to dial a backend).
	TCP func(r *TCPRequest)
	// UDP is called synchronously on the packet path for the first datagram
	// of a new (src, dst) flow and must not block. Returning nil refuses the
	// flow with ICMP port unreachable. Otherwise the returned func runs in its
	// own goroutine with a conn bound to the flow (Read/Write datagrams to and
	// from src as dst); closing the conn ends the flow and releases it so a
	// later datagram starts a new flow.
	UDP func(src, dst netip.AddrPort) func(c net.Conn)
	// Ping is asked whether an ICMP echo request from src to dst may be
	// answered; dst may be any address (service VIPs). The gateway's own
	// address is always answered. nil: only the gateway's own address.
	Ping func(src, dst netip.Addr) bool
}

// TCPConfig tunes the stack's TCP.
type TCPConfig struct {
	// MaxInFlight bounds TCP handshakes being set up at once (SYNs handed to
	// the handler and not yet accepted or rejected). Default 1024.
	MaxInFlight int
	// MaxInFlightPerSource bounds those per source address, so one peer
	// cannot use them all. Default MaxInFlight/8.
	MaxInFlightPerSource int
}

// Config configures an Overlay. Zero values take the documented defaults.
type Config struct {
	PrivateKey Key
	// Bind is the UDP transport; nil means real UDP sockets on ListenPort
	// (conn.NewDefaultBind). Tests pass an in-memory bind.
	Bind       conn.Bind
	ListenPort uint16     // 0: any free port (see Port)
	Address    netip.Addr // the gateway's overlay address (DNS, site links)
	MTU        int        // default 1420
	TCP        TCPConfig
	Handler    Handler
	Logger     *slog.Logger // operational log; nil discards
}

// Overlay is a running WireGuard device and its gVisor stack.
type Overlay struct {
	// implementation fields
}

// New starts the device (bound and up) and the stack.
func New(cfg Config) (*Overlay, error) { panic("TODO") }

// Port returns the UDP port the device listens on.
func (o *Overlay) Port() uint16 { panic("TODO") }

// SetPeers makes the device's peers exactly peers: peers whose key is
// unchanged and whose settings are unchanged keep their sessions untouched;
// changed ones are updated in place; missing ones are removed.
func (o *Overlay) SetPeers(peers []Peer) error { panic("TODO") }

// Peers returns the device's peer statistics.
func (o *Overlay) Peers() []PeerStats { panic("TODO") }

// DialTCP opens a TCP connection inside the overlay from the gateway's
// address to dst (site links).
func (o *Overlay) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) { panic("TODO") }

// ListenTCP listens inside the overlay on the gateway's address (port).
// Listeners take precedence over the promiscuous forwarder.
func (o *Overlay) ListenTCP(port uint16) (net.Listener, error) { panic("TODO") }

// ListenUDP listens inside the overlay on the gateway's address (port).
func (o *Overlay) ListenUDP(port uint16) (net.PacketConn, error) { panic("TODO") }

// Close stops the device and the stack; live flows' conns return errors.
func (o *Overlay) Close() error { panic("TODO") }
