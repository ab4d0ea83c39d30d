package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// LAN listeners front devices that cannot run WireGuard (a scanner, an old
// workstation): a [[listener]] is a socket on one of the gateway host's own
// addresses that forwards to a named service, here or at another site. The
// caller's identity is the LAN [[identity]] of this site whose source CIDR
// holds its address (weaker than a WireGuard key: anyone who can use that
// address on the LAN is that identity). Unknown sources are refused with
// unknown-identity; known ones are decided as any flow.
//
// The port asked for is the listener's own port when the service offers
// it, else the service's first port of that protocol. In the overlay (and
// in the audit log) the flow is the device's own overlay address, with its
// source port, to the service's VIP and that port; lan_src records the
// device's LAN address. For a service at another site the flow is dialed
// from that overlay address, so the serving gateway identifies the device
// and both gateways' records carry the same community_id.

// startListeners opens every [[listener]]; they close with teardown.
func (g *Gateway) startListeners() error {
	for _, lc := range g.cfg.Listener {
		ap, proto, err := ParseListen(lc.Listen)
		if err != nil {
			return err
		}
		if proto == policy.ProtoUDP {
			pc, err := net.ListenPacket("udp", ap.String())
			if err != nil {
				return fmt.Errorf("listener %s: %w", lc.Listen, err)
			}
			g.listeners = append(g.listeners, pc)
			go g.serveLANUDP(pc, lc.Service, ap.Port())
			continue
		}
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			return fmt.Errorf("listener %s: %w", lc.Listen, err)
		}
		g.listeners = append(g.listeners, ln)
		go g.acceptLAN(ln, lc.Service, ap.Port())
	}
	return nil
}

func (g *Gateway) acceptLAN(ln net.Listener, service string, port uint16) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				g.log.Error("listener stopped", "listen", ln.Addr(), "err", err)
			}
			return
		}
		go g.handleLAN(c, service, port)
	}
}

func (g *Gateway) handleLAN(c net.Conn, service string, port uint16) {
	if g.closing.Load() {
		c.Close()
		return
	}
	v := g.classifyLAN(c.RemoteAddr().(*net.TCPAddr).AddrPort(), service, port, policy.ProtoTCP)
	cs := lanTCP{c}
	if f := g.admit(v, cs); f != nil {
		g.serve(v, f, cs)
	}
}

// lanTCP is the client side of a LAN device's TCP flow: a connection the
// listener accepted, which a refusal resets.
type lanTCP struct{ c net.Conn }

func (l lanTCP) refuse() {
	if tc, ok := l.c.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST: refused, not a clean close
	}
	l.c.Close()
}

func (l lanTCP) accept() (net.Conn, error) { return l.c, nil }
func (l lanTCP) abandon()                  {}

// serveLANUDP demultiplexes one UDP listener into flows by source.
func (g *Gateway) serveLANUDP(pc net.PacketConn, service string, port uint16) {
	var mu sync.Mutex
	sessions := make(map[netip.AddrPort]*lanDatagrams)
	var unknown denyLimiter
	buf := make([]byte, udpBufSize)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, s := range sessions {
				s.Close()
			}
			mu.Unlock()
			return
		}
		src := from.(*net.UDPAddr).AddrPort()
		mu.Lock()
		s := sessions[src]
		mu.Unlock()
		if s == nil {
			if g.closing.Load() {
				continue
			}
			v := g.classifyLAN(src, service, port, policy.ProtoUDP)
			if v.id == nil {
				ok, suppressed := unknown.allow(time.Now())
				if suppressed > 0 {
					g.logSuppressedDenials(v, "unknown-identity", suppressed)
				}
				if !ok {
					continue
				}
			}
			s = &lanDatagrams{pc: pc, peer: from, in: make(chan []byte, 64), done: make(chan struct{})}
			f := g.admit(v, s)
			if f == nil {
				continue // denied and logged; UDP has no refusal to send here
			}
			mu.Lock()
			sessions[src] = s
			mu.Unlock()
			go func() {
				g.serve(v, f, s)
				mu.Lock()
				delete(sessions, src)
				mu.Unlock()
			}()
		}
		s.deliver(append([]byte(nil), buf[:n]...))
	}
}

// logSuppressedDenials writes one flow.deny for the n denials (reason)
// like v that were not logged one by one (denyLimiter).
func (g *Gateway) logSuppressedDenials(v verdict, reason string, n int) {
	ff := v.fields()
	ff.src, ff.lanSrc, ff.communityID = netip.AddrPort{}, netip.AddrPort{}, ""
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventFlowDeny,
		ff.attrs(slog.String("reason", reason), slog.Int("suppressed", n))...)
}

// lanDatagrams is one source's flow on a shared UDP listener, as a
// net.Conn (reads take what the listener loop delivered, writes go back to
// the source) and as its own client side: UDP has no refusal to send.
type lanDatagrams struct {
	pc   net.PacketConn
	peer net.Addr
	in   chan []byte
	once sync.Once
	done chan struct{}
}

func (s *lanDatagrams) refuse()                   { s.Close() }
func (s *lanDatagrams) accept() (net.Conn, error) { return s, nil }
func (s *lanDatagrams) abandon()                  {}

func (s *lanDatagrams) deliver(p []byte) {
	select {
	case s.in <- p:
	case <-s.done:
	default: // the flow is not keeping up: drop, as a full socket buffer would
	}
}

func (s *lanDatagrams) Read(p []byte) (int, error) {
	select {
	case d := <-s.in:
		return copy(p, d), nil
	case <-s.done:
		return 0, io.EOF
	}
}

func (s *lanDatagrams) Write(p []byte) (int, error) { return s.pc.WriteTo(p, s.peer) }
func (s *lanDatagrams) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}
func (s *lanDatagrams) LocalAddr() net.Addr                { return s.pc.LocalAddr() }
func (s *lanDatagrams) RemoteAddr() net.Addr               { return s.peer }
func (s *lanDatagrams) SetDeadline(t time.Time) error      { return nil }
func (s *lanDatagrams) SetReadDeadline(t time.Time) error  { return nil }
func (s *lanDatagrams) SetWriteDeadline(t time.Time) error { return nil }
