package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/internal/wgkey"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const defaultMTU = 1420

// New starts the device (bound and up) and the stack.
func New(cfg Config) (*Overlay, error) {
	if cfg.Handler.TCP == nil || cfg.Handler.UDP == nil {
		return nil, errors.New("overlay: Handler.TCP and Handler.UDP must be set")
	}
	if cfg.Address.IsValid() {
		cfg.Address = cfg.Address.Unmap()
	}
	if cfg.MTU <= 0 {
		cfg.MTU = defaultMTU
	}
	cfg.TCP.setDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Bind == nil {
		cfg.Bind = conn.NewDefaultBind()
	}
	if cfg.HeapBudget == 0 {
		cfg.HeapBudget = DefaultHeapBudget
	}
	gate := newHeapGate(cfg.HeapBudget)
	cfg.Bind = &gatedBind{Bind: cfg.Bind, gate: gate}
	o := &Overlay{
		gate:     gate,
		cfg:      cfg,
		log:      cfg.Logger,
		link:     newLink(cfg.MTU),
		inflight: &sourceLimiter{limit: cfg.TCP.MaxInFlightPerSource},
		peers:    make(map[wgkey.Public]Peer),
	}
	o.link.gate = gate
	echo := &echoResponder{self: cfg.Address, allow: cfg.Handler.Ping, reply: o.link.inject}
	o.link.intercept = echo.handle

	s, err := newStack(o.link, cfg.Address, cfg.TCP)
	if err != nil {
		return nil, err
	}
	o.stack = s
	o.link.relay = newRelayTable(cfg.Handler.Route, o.link.inject, cfg.MTU)
	fwd := tcp.NewForwarder(s, 0, cfg.TCP.MaxInFlight, o.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, o.tcpPacketHandler(fwd))
	s.SetTransportProtocolHandler(udp.ProtocolNumber, o.handleUDP)

	o.dev = device.NewDevice((*tunSide)(o.link), cfg.Bind, deviceLogger(o.log))
	setup := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	if err := o.dev.IpcSet(setup); err != nil {
		o.close()
		return nil, fmt.Errorf("overlay: configure device: %w", err)
	}
	if err := o.dev.Up(); err != nil {
		o.close()
		return nil, fmt.Errorf("overlay: device up: %w", err)
	}
	port, err := o.listenPort()
	if err != nil {
		o.close()
		return nil, err
	}
	o.port = port
	return o, nil
}

// listenPort reads the port the bind actually got from the device.
func (o *Overlay) listenPort() (uint16, error) {
	dump, err := o.dev.IpcGet()
	if err != nil {
		return 0, fmt.Errorf("overlay: read device state: %w", err)
	}
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return 0, fmt.Errorf("overlay: bad listen_port %q", v)
			}
			return uint16(p), nil
		}
	}
	return 0, errors.New("overlay: device reports no listen_port")
}

func (o *Overlay) close() {
	if o.link.relay != nil { // nil when the stack never came up
		o.link.relay.close()
	}
	if o.dev != nil {
		o.dev.Close() // closes the bind and the link (tun side)
	}
	o.link.shutdown()
	o.stack.Close()
	o.stack.Wait()
}

func deviceLogger(l *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			l.Debug("wireguard: " + fmt.Sprintf(format, args...))
		},
		Errorf: func(format string, args ...any) {
			l.Error("wireguard: " + fmt.Sprintf(format, args...))
		},
	}
}

// DialTCP opens a TCP connection inside the overlay from the gateway's
// address to dst (site links).
func (o *Overlay) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	c, err := gonet.DialContextTCP(ctx, o.stack, fullAddr(dst), protoOf(dst.Addr().Unmap()))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListenTCP listens inside the overlay on the gateway's address (port).
// Listeners take precedence over the promiscuous forwarder.
func (o *Overlay) ListenTCP(port uint16) (net.Listener, error) {
	if !o.cfg.Address.IsValid() {
		return nil, errors.New("overlay: no Address to listen on")
	}
	l, err := gonet.ListenTCP(o.stack, fullAddr(netip.AddrPortFrom(o.cfg.Address, port)), protoOf(o.cfg.Address))
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenUDP listens inside the overlay on the gateway's address (port).
func (o *Overlay) ListenUDP(port uint16) (net.PacketConn, error) {
	if !o.cfg.Address.IsValid() {
		return nil, errors.New("overlay: no Address to listen on")
	}
	la := fullAddr(netip.AddrPortFrom(o.cfg.Address, port))
	c, err := gonet.DialUDP(o.stack, &la, nil, protoOf(o.cfg.Address))
	if err != nil {
		return nil, err
	}
	return c, nil
}
