// Package wgclient is a userspace WireGuard client for tests and the
// in-process demo: a wireguard-go device on wireguard-go's own netstack
// (tun/netstack), with one peer, the gateway.
//
// It is deliberately flexible: Addresses need not match what the gateway
// allows for this client's key, so that tests can send packets whose source
// is another peer's address (the gateway must drop them).
package wgclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	PrivateKey wgkey.Private
	// Addresses are the client's own overlay addresses (its tunnel
	// interface addresses).
	Addresses []netip.Addr
	// PeerPublicKey and PeerEndpoint name the gateway.
	PeerPublicKey wgkey.Public
	PeerEndpoint  netip.AddrPort
	// AllowedIPs routed to the gateway; default 0.0.0.0/0 and ::/0.
	AllowedIPs []netip.Prefix
	// Bind is the UDP transport; nil means real UDP sockets.
	Bind conn.Bind
	// MTU of the tunnel, default 1420.
	MTU int
	// PersistentKeepalive, zero: off.
	PersistentKeepalive time.Duration
	// Verbose logs the device's debug output through Logf (nil: silent).
	Logf func(format string, args ...any)
	// Inbound, when set, sees every packet the gateway sends before the
	// client's stack does; false drops it. Tests use it to play clients
	// that misbehave (one that never answers a SYN-ACK).
	Inbound func(pkt []byte) bool
}

// Client is a running WireGuard client.
type Client struct {
	dev  *device.Device
	tnet *netstack.Net
	tun  *sniffTUN

	closeOnce sync.Once
}

// New starts the client's device and configures the gateway as its peer.
// Nothing is sent until the first packet (the handshake is lazy).
func New(cfg Config) (*Client, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("wgclient: no Addresses")
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1420
	}
	if len(cfg.AllowedIPs) == 0 {
		cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	if cfg.Bind == nil {
		cfg.Bind = conn.NewDefaultBind()
	}
	td, tnet, err := netstack.CreateNetTUN(cfg.Addresses, nil, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("wgclient: netstack: %w", err)
	}
	st := &sniffTUN{Device: td, inbound: cfg.Inbound}
	logger := &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	if cfg.Logf != nil {
		logger = &device.Logger{Verbosef: cfg.Logf, Errorf: cfg.Logf}
	}
	dev := device.NewDevice(st, cfg.Bind, logger)
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", cfg.PrivateKey.Hex())
	fmt.Fprintf(&b, "public_key=%s\n", cfg.PeerPublicKey.Hex())
	fmt.Fprintf(&b, "endpoint=%s\n", cfg.PeerEndpoint)
	for _, p := range cfg.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	if cfg.PersistentKeepalive > 0 {
		fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(cfg.PersistentKeepalive/time.Second))
	}
	if err := dev.IpcSet(b.String()); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wgclient: configure: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wgclient: up: %w", err)
	}
	return &Client{dev: dev, tnet: tnet, tun: st}, nil
}

// DialContext dials inside the tunnel: network is "tcp", "tcp4", "tcp6",
// "udp", "udp4", "udp6"; addr is "ip:port".
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.tnet.DialContext(ctx, network, addr)
}

// DialUDP returns a connected UDP socket to dst.
func (c *Client) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	return c.tnet.DialUDPAddrPort(netip.AddrPort{}, dst)
}

// ListenUDP returns an unconnected UDP socket on laddr (port 0: any).
func (c *Client) ListenUDP(laddr netip.AddrPort) (net.PacketConn, error) {
	return c.tnet.ListenUDPAddrPort(laddr)
}

// ListenTCP listens on laddr inside the tunnel.
func (c *Client) ListenTCP(laddr netip.AddrPort) (net.Listener, error) {
	return c.tnet.ListenTCPAddrPort(laddr)
}

// Ping sends ICMP echo requests to dst until a reply comes or ctx ends.
//
// A reader goroutine stays in Read while requests are resent every
// pingRetry: netstack's PingConn.Read registers for the readable event only
// when called, so a reply that lands before Read is called is never
// noticed; a later request's reply is.
func (c *Client) Ping(ctx context.Context, dst netip.Addr) error {
	// wireguard-go's netstack now and then leaves a fresh ping endpoint
	// deaf to replies that do reach the stack (seen in about one run in
	// fifty: the replies arrive, the endpoint never sees them). A new
	// endpoint, with a new identifier, every second works around it.
	for {
		err := c.pingOnce(ctx, dst, time.Second)
		if err == nil || ctx.Err() != nil || !errors.Is(err, errNoReply) {
			return err
		}
	}
}

var errNoReply = errors.New("no reply")

// pingOnce pings dst from one ping endpoint for at most d.
func (c *Client) pingOnce(ctx context.Context, dst netip.Addr, d time.Duration) error {
	pc, err := c.tnet.DialPingAddr(netip.Addr{}, dst)
	if err != nil {
		return fmt.Errorf("wgclient: ping %v: %w", dst, err)
	}
	echo, reply := byte(8), byte(0)
	if dst.Is6() {
		echo, reply = 128, 129
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				got <- err
				return
			}
			if n >= 8 && buf[0] == reply {
				got <- nil
				return
			}
		}
	}()
	defer func() {
		pc.Close() // ends the reader's Read
		<-got
	}()
	msg := make([]byte, 8+16)
	msg[0] = echo
	copy(msg[8:], "wardgate-ping...")
	tick := time.NewTicker(pingRetry)
	defer tick.Stop()
	give := time.NewTimer(d)
	defer give.Stop()
	for {
		binary.BigEndian.PutUint16(msg[6:8], uint16(c.tun.seq.Add(1)))
		if _, err := pc.Write(msg); err != nil {
			return fmt.Errorf("wgclient: ping %v: %w", dst, err)
		}
		select {
		case err := <-got:
			got <- err // for the deferred wait
			if err != nil {
				return fmt.Errorf("wgclient: ping %v: %w", dst, err)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wgclient: ping %v: %w", dst, ctx.Err())
		case <-give.C:
			return fmt.Errorf("wgclient: ping %v: %w", dst, errNoReply)
		case <-tick.C:
		}
	}
}

const pingRetry = 250 * time.Millisecond

// PortUnreachables counts ICMP port-unreachable messages the client has
// received (gVisor's UDP sockets do not surface them on Read).
func (c *Client) PortUnreachables() uint64 { return c.tun.unreach.Load() }

// LastHandshake is the time of the last completed handshake with the
// gateway; zero if none.
func (c *Client) LastHandshake() time.Time {
	dump, err := c.dev.IpcGet()
	if err != nil {
		return time.Time{}
	}
	var sec, nsec int64
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "last_handshake_time_sec="); ok {
			fmt.Sscan(v, &sec)
		}
		if v, ok := strings.CutPrefix(line, "last_handshake_time_nsec="); ok {
			fmt.Sscan(v, &nsec)
		}
	}
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, nsec)
}

// Close stops the device and its netstack.
func (c *Client) Close() error {
	c.closeOnce.Do(c.dev.Close)
	return nil
}

// sniffTUN watches packets going into the client's netstack for ICMP
// destination-port-unreachable messages.
type sniffTUN struct {
	tun.Device
	unreach atomic.Uint64
	seq     atomic.Uint32
	inbound func(pkt []byte) bool
}

func (s *sniffTUN) Write(bufs [][]byte, offset int) (int, error) {
	kept := bufs[:0:0]
	for _, b := range bufs {
		if s.inbound != nil && !s.inbound(b[offset:]) {
			continue
		}
		if isPortUnreachable(b[offset:]) {
			s.unreach.Add(1)
		}
		kept = append(kept, b)
	}
	if _, err := s.Device.Write(kept, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

func isPortUnreachable(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		return len(p) >= ihl+2 && p[9] == 1 && p[ihl] == 3 && p[ihl+1] == 3
	case 6:
		return len(p) >= 42 && p[6] == 58 && p[40] == 1 && p[41] == 4
	}
	return false
}
