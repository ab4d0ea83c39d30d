package overlay_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay"
)

// echoUDP echoes datagrams until idle for a second.
func echoUDP(c net.Conn) {
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestUDPEchoAndRefuse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		allowed := netip.MustParseAddrPort("100.81.0.20:53")
		calls := make(chan [2]netip.AddrPort, 16)
		n := newTestNet(t, tr, overlay.Handler{
			TCP: echoTCP,
			UDP: func(src, dst netip.AddrPort) func(net.Conn) {
				calls <- [2]netip.AddrPort{src, dst}
				if dst != allowed {
					return nil
				}
				return echoUDP
			},
		}, overlay.Config{})
		p := n.clients(1)[0]

		c, err := p.DialUDP(allowed)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 100)
		for i := range 5 {
			msg := []byte{'p', byte('0' + i)}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
			if string(buf[:k]) != string(msg) {
				t.Fatalf("echo %q, want %q", buf[:k], msg)
			}
		}
		if got := len(calls); got != 1 {
			t.Errorf("handler called %d times for one flow, want 1", got)
		}
		call := <-calls
		if call[0].Addr() != p.addr || call[1] != allowed {
			t.Errorf("handler saw %v -> %v", call[0], call[1])
		}

		// Refused: the client gets ICMP port unreachable.
		before := p.PortUnreachables()
		r, err := p.DialUDP(netip.MustParseAddrPort("100.81.0.21:5000"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Write([]byte("x"))
		testwait.Until(t, 5*time.Second, "an ICMP port unreachable for a refused flow", func() bool { return p.PortUnreachables() != before })
	})
}
