package overlay_test

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay"
)

func TestIPv6Flows(t *testing.T) {
	vip := netip.MustParseAddr("fd00:81::10")
	var tcpSrc netip.AddrPort
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) { tcpSrc = r.Src; echoTCP(r) },
		UDP: func(src, dst netip.AddrPort) func(net.Conn) {
			if dst.Port() == 53 {
				return echoUDP
			}
			return nil
		},
		Ping: func(src, dst netip.Addr) bool { return dst == vip },
	}, overlay.Config{})
	p := n.newPeer(netip.MustParseAddr("fd00:80::10"))
	if err := n.gw.SetPeers([]overlay.Peer{p.peer}); err != nil {
		t.Fatal(err)
	}
	c, err := p.DialContext(ctxTimeout(t, 5*time.Second), "tcp", "[fd00:81::10]:443")
	if err != nil {
		t.Fatal(err)
	}
	// Large enough that the gateway's replies go out as GSO segments.
	want := bytes.Repeat([]byte("six-"), 64<<10)
	go func() {
		c.Write(want)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("echo: %d bytes, %v; want %d identical", len(got), err, len(want))
	}
	if tcpSrc.Addr() != p.addr {
		t.Errorf("handler saw src %v, want %v", tcpSrc, p.addr)
	}

	u, err := p.DialUDP(netip.AddrPortFrom(vip, 53))
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("q6"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	if k, err := u.Read(buf); err != nil || string(buf[:k]) != "q6" {
		t.Errorf("UDP echo %q, %v", buf[:k], err)
	}
	u.Close()

	before := p.PortUnreachables()
	u, _ = p.DialUDP(netip.AddrPortFrom(vip, 54))
	u.Write([]byte("x"))
	u.Close()
	testwait.Until(t, 5*time.Second, "an ICMPv6 port unreachable for a refused flow", func() bool { return p.PortUnreachables() != before })

	if err := p.Ping(ctxTimeout(t, 5*time.Second), vip); err != nil {
		t.Errorf("ping6 allowed VIP: %v", err)
	}
	if err := p.Ping(ctxTimeout(t, 300*time.Millisecond), netip.MustParseAddr("fd00:81::11")); err == nil {
		t.Error("ping6 to a non-allowed address answered")
	}
}
