package overlay_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var serviceAddr = netip.MustParseAddrPort("100.81.0.10:80")

// sizedTCP accepts, then answers each 4-byte big-endian length with that
// many bytes, until EOF.
func sizedTCP(r *overlay.TCPRequest) {
	c, err := r.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	body := make([]byte, 1<<20)
	var req [4]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		for left := int(binary.BigEndian.Uint32(req[:])); left > 0; {
			k, err := c.Write(body[:min(left, len(body))])
			if err != nil {
				return
			}
			left -= k
		}
	}
}

// fetch asks a sizedTCP server for size bytes and reads them.
func fetch(t testing.TB, c net.Conn, size int) {
	t.Helper()
	var req [4]byte
	binary.BigEndian.PutUint32(req[:], uint32(size))
	if _, err := c.Write(req[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(size)); err != nil {
		t.Fatal(err)
	}
}

// txTo is what the gateway's device has sent to key so far (wire bytes).
func txTo(t testing.TB, o *overlay.Overlay, key wgkey.Private) uint64 {
	t.Helper()
	for _, s := range o.Peers() {
		if s.PublicKey == key.Public() {
			return s.TxBytes
		}
	}
	t.Fatalf("no peer %v", key.Public())
	return 0
}

// sync sends an echo request to the gateway after whatever r sent before
// and waits for the reply: a peer's packets reach the stack in order and
// are handled inline, so everything sent before has been handled.
func (r *rawPeer) sync(t testing.TB) {
	t.Helper()
	before := r.tun.received.Load()
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	binary.BigEndian.PutUint16(echo[2:4], ^checksumOf(echo))
	r.send(ipv4Packet(r.addr, gatewayAddr, header.ICMPv4ProtocolNumber, 2, 0, echo))
	testwait.Until(t, 10*time.Second, "the gateway's echo reply to the raw peer", func() bool { return r.tun.received.Load() != before })
}

func checksumOf(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// TestForgedFragNeededIgnored: peer B forges "fragmentation needed, MTU 68"
// quoting the gateway's segments to peer A. gVisor would match it to A's
// connection by the quoted 4-tuple and shrink its MSS for good; the
// gateway must drop it, so that A's download costs the same wire bytes
// after as before.
func TestForgedFragNeededIgnored(t *testing.T) {
	n := newTestNet(t, memTransport, overlay.Handler{TCP: sizedTCP, UDP: refuseUDP}, overlay.Config{})
	a := n.newPeer(netip.Addr{})
	b := n.newRawPeer(netip.MustParseAddr("100.80.1.200"))
	if err := n.gw.SetPeers([]overlay.Peer{a.peer, b.peer}); err != nil {
		t.Fatal(err)
	}
	c, err := a.DialContext(ctxTimeout(t, 10*time.Second), "tcp", serviceAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 4 << 20
	fetch(t, c, size) // warm up: the window opens
	tx0 := txTo(t, n.gw, a.key)
	fetch(t, c, size)
	clean := txTo(t, n.gw, a.key) - tx0

	aLocal := netip.MustParseAddrPort(c.LocalAddr().String())
	quoted := ipv4Packet(serviceAddr.Addr(), aLocal.Addr(), header.TCPProtocolNumber, 7, 0x4000,
		tcpSegment(serviceAddr, aLocal, 1, header.TCPFlagAck))
	b.send(icmpv4Error(b.addr, 3, 4, 68, quoted)) // fragmentation needed, next-hop MTU 68
	b.sync(t)

	tx1 := txTo(t, n.gw, a.key)
	fetch(t, c, size)
	attacked := txTo(t, n.gw, a.key) - tx1
	t.Logf("wire bytes for %d payload bytes: %d before, %d after the forged error", size, clean, attacked)
	if float64(attacked) > 1.2*float64(clean) {
		t.Errorf("A's download took %.1fx the wire bytes after B's forged ICMP error", float64(attacked)/float64(clean))
	}
}

// TestForgedPortUnreachableIgnored: peer B forges "port unreachable"
// quoting the gateway's datagrams to peer A's UDP flow; the flow must live
// on (one flow, answered after).
func TestForgedPortUnreachableIgnored(t *testing.T) {
	var flows, flowErrs atomic.Int32
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: echoTCP,
		UDP: func(src, dst netip.AddrPort) func(net.Conn) {
			flows.Add(1)
			return func(c net.Conn) {
				buf := make([]byte, 2048)
				for {
					c.SetReadDeadline(time.Now().Add(20 * time.Second))
					k, err := c.Read(buf)
					if err == nil {
						_, err = c.Write(buf[:k])
					}
					if err != nil {
						flowErrs.Add(1)
						return
					}
				}
			}
		},
	}, overlay.Config{})
	a := n.newPeer(netip.Addr{})
	b := n.newRawPeer(netip.MustParseAddr("100.80.1.200"))
	if err := n.gw.SetPeers([]overlay.Peer{a.peer, b.peer}); err != nil {
		t.Fatal(err)
	}
	svc := netip.MustParseAddrPort("100.81.0.20:53")
	c, err := a.DialUDP(svc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string) {
		t.Helper()
		buf := make([]byte, 64)
		for try := 0; ; try++ {
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(time.Second))
			k, err := c.Read(buf)
			if err == nil && string(buf[:k]) == msg {
				return
			}
			if try == 10 {
				t.Fatalf("no echo of %q: %v", msg, err)
			}
		}
	}
	roundTrip("one")

	aLocal := netip.MustParseAddrPort(c.LocalAddr().String())
	udp := make([]byte, header.UDPMinimumSize+3)
	header.UDP(udp).Encode(&header.UDPFields{SrcPort: svc.Port(), DstPort: aLocal.Port(), Length: uint16(len(udp))})
	quoted := ipv4Packet(svc.Addr(), aLocal.Addr(), header.UDPProtocolNumber, 9, 0, udp)
	b.send(icmpv4Error(b.addr, 3, 3, 0, quoted)) // port unreachable
	b.sync(t)

	roundTrip("two")
	if f, e := flows.Load(), flowErrs.Load(); f != 1 || e != 0 {
		t.Errorf("after B's forged port unreachable: %d flows started, %d ended in error; want 1 and 0", f, e)
	}
}

// TestFragmentsDropped: a UDP datagram that a peer sends in two IPv4
// fragments never reaches the handler (gVisor's reassembly buffer is
// shared by all peers, so none may use it); the same datagram whole does.
func TestFragmentsDropped(t *testing.T) {
	flows := make(chan netip.AddrPort, 4)
	n := newTestNet(t, memTransport, overlay.Handler{
		TCP: echoTCP,
		UDP: func(src, dst netip.AddrPort) func(net.Conn) {
			flows <- src
			return nil
		},
	}, overlay.Config{})
	b := n.newRawPeer(netip.MustParseAddr("100.80.1.200"))
	if err := n.gw.SetPeers([]overlay.Peer{b.peer}); err != nil {
		t.Fatal(err)
	}
	svc := netip.MustParseAddrPort("100.81.0.20:53")
	payload := make([]byte, 64)
	udp := make([]byte, header.UDPMinimumSize+len(payload))
	header.UDP(udp).Encode(&header.UDPFields{SrcPort: 4000, DstPort: svc.Port(), Length: uint16(len(udp))})
	// Fragment offsets count 8-byte units; the first fragment carries 40
	// bytes with "more fragments" set.
	b.send(ipv4Packet(b.addr, svc.Addr(), header.UDPProtocolNumber, 77, 0x2000, udp[:40]))
	b.send(ipv4Packet(b.addr, svc.Addr(), header.UDPProtocolNumber, 77, 40/8, udp[40:]))
	b.sync(t)
	select {
	case src := <-flows:
		t.Fatalf("a fragmented datagram from %v reached the handler", src)
	default:
	}
	b.send(ipv4Packet(b.addr, svc.Addr(), header.UDPProtocolNumber, 78, 0, udp))
	b.sync(t)
	select {
	case <-flows:
	default:
		t.Fatal("the whole datagram did not reach the handler")
	}
}
