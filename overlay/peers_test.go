package overlay_test

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
)

func statsOf(t *testing.T, o *overlay.Overlay, k wgkey.Public) (overlay.PeerStats, bool) {
	t.Helper()
	for _, s := range o.Peers() {
		if s.PublicKey == k {
			return s, true
		}
	}
	return overlay.PeerStats{}, false
}

func dialOK(t *testing.T, p *peer, dst string, timeout time.Duration) error {
	t.Helper()
	c, err := p.DialContext(ctxTimeout(t, timeout), "tcp", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("hi")); err != nil {
		return err
	}
	buf := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err = c.Read(buf)
	return err
}

func TestSetPeersAddRemoveUnchanged(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		n := newTestNet(t, tr, overlay.Handler{TCP: echoTCP, UDP: refuseUDP}, overlay.Config{})
		a := n.newPeer(netip.Addr{})
		b := n.newPeer(netip.Addr{})
		if err := n.gw.SetPeers([]overlay.Peer{a.peer, b.peer}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*peer{a, b} {
			if err := dialOK(t, p, "100.81.0.10:80", 5*time.Second); err != nil {
				t.Fatalf("%v: %v", p.addr, err)
			}
		}
		sb, _ := statsOf(t, n.gw, b.peer.PublicKey)
		sa, ok := statsOf(t, n.gw, a.peer.PublicKey)
		if !ok || sa.LastHandshake.IsZero() || sa.RxBytes == 0 || sa.TxBytes == 0 || !sa.Endpoint.IsValid() {
			t.Fatalf("stats of a: %+v (found %v)", sa, ok)
		}

		// Same set, a third peer added, b's allowed IPs changed: a keeps its
		// session, b is updated in place.
		c := n.newPeer(netip.Addr{})
		b2 := b.peer
		b2.AllowedIPs = append(b2.AllowedIPs, netip.MustParsePrefix("100.80.9.0/24"))
		if err := n.gw.SetPeers([]overlay.Peer{b2, a.peer, c.peer}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*peer{a, b, c} {
			if err := dialOK(t, p, "100.81.0.10:80", 5*time.Second); err != nil {
				t.Fatalf("%v after update: %v", p.addr, err)
			}
		}
		if sa2, _ := statsOf(t, n.gw, a.peer.PublicKey); !sa2.LastHandshake.Equal(sa.LastHandshake) {
			t.Errorf("unchanged peer re-handshook: %v -> %v", sa.LastHandshake, sa2.LastHandshake)
		}
		if sb2, _ := statsOf(t, n.gw, b.peer.PublicKey); !sb2.LastHandshake.Equal(sb.LastHandshake) {
			t.Errorf("updated peer re-handshook: %v -> %v", sb.LastHandshake, sb2.LastHandshake)
		}
		if len(n.gw.Peers()) != 3 {
			t.Errorf("%d peers, want 3", len(n.gw.Peers()))
		}

		// b removed: it reaches nothing, a and c still do.
		if err := n.gw.SetPeers([]overlay.Peer{a.peer, c.peer}); err != nil {
			t.Fatal(err)
		}
		if _, ok := statsOf(t, n.gw, b.peer.PublicKey); ok {
			t.Error("removed peer still on the device")
		}
		if err := dialOK(t, b, "100.81.0.10:80", 500*time.Millisecond); err == nil {
			t.Error("removed peer still connects")
		}
		if err := dialOK(t, a, "100.81.0.10:80", 5*time.Second); err != nil {
			t.Errorf("a after removing b: %v", err)
		}
	})
}

// A client whose packets carry another peer's source address reaches
// nothing: cryptokey routing drops them before the stack.
func TestSpoofedSourceDropped(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		var spoofed atomic.Int32
		victim := netip.MustParseAddr("100.80.1.50")
		n := newTestNet(t, tr, overlay.Handler{
			TCP: func(r *overlay.TCPRequest) {
				if r.Src.Addr() == victim {
					spoofed.Add(1)
				}
				echoTCP(r)
			},
			UDP: func(src, dst netip.AddrPort) func(net.Conn) {
				if src.Addr() == victim {
					spoofed.Add(1)
				}
				return echoUDP
			},
			Ping: func(src, dst netip.Addr) bool {
				if src == victim {
					spoofed.Add(1)
				}
				return true
			},
		}, overlay.Config{})
		honest := n.newPeer(victim)
		liar := n.newPeer(victim) // same source address, different key
		liar.peer.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("100.80.1.51/32")}
		if err := n.gw.SetPeers([]overlay.Peer{honest.peer, liar.peer}); err != nil {
			t.Fatal(err)
		}
		if err := dialOK(t, liar, "100.81.0.10:80", 500*time.Millisecond); err == nil {
			t.Error("spoofing client connected over TCP")
		}
		if u, err := liar.DialUDP(netip.MustParseAddrPort("100.81.0.20:53")); err == nil {
			u.Write([]byte("x"))
			u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := u.Read(make([]byte, 10)); err == nil {
				t.Error("spoofing client got a UDP answer")
			}
			u.Close()
		}
		if err := liar.Ping(ctxTimeout(t, 300*time.Millisecond), gatewayAddr); err == nil {
			t.Error("spoofing client got a ping answer")
		}
		if liar.LastHandshake().IsZero() {
			t.Error("spoofing client never completed a handshake: the test proves nothing")
		}
		if spoofed.Load() != 0 {
			t.Errorf("handler called %d times with the spoofed source", spoofed.Load())
		}
		// The honest owner of the address still works.
		if err := dialOK(t, honest, "100.81.0.10:80", 5*time.Second); err != nil {
			t.Errorf("honest peer: %v", err)
		}
		if spoofed.Load() != 1 {
			t.Errorf("honest peer's flow: handler calls %d, want 1", spoofed.Load())
		}
	})
}
