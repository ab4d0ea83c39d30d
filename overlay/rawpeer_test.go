package overlay_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rawPeer is a WireGuard peer without a network stack: the test writes raw
// IP packets into its tunnel (forged ICMP errors, floods, fragments) and
// counts what comes back. It is the attacker in the hardening tests: a
// legitimate peer that sends whatever it likes from its own address.
type rawPeer struct {
	key  wgkey.Private
	addr netip.Addr
	peer overlay.Peer // what the gateway must know of it
	dev  *device.Device
	tun  *chanTUN
}

// newRawPeer creates a raw peer that the gateway does NOT know yet (add
// p.peer with SetPeers).
func (n *testNet) newRawPeer(addr netip.Addr) *rawPeer {
	n.t.Helper()
	key := mustKey(n.t)
	ct := newChanTUN()
	if n.tr != memTransport {
		n.t.Fatal("raw peers run on memnet only")
	}
	bind := n.sw.Bind(netip.AddrFrom4([4]byte{10, 0, 2, addr.As4()[3]}))
	dev := device.NewDevice(ct, bind, &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		key.Hex(), n.gwKey.Public().Hex(), n.gwEP)
	if err := dev.IpcSet(b.String()); err != nil {
		n.t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(dev.Close)
	return &rawPeer{
		key:  key,
		addr: addr,
		peer: overlay.Peer{
			PublicKey:  key.Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())},
		},
		dev: dev,
		tun: ct,
	}
}

// send queues pkt for the device to encrypt and send to the gateway.
func (r *rawPeer) send(pkt []byte) { r.tun.in <- pkt }

// chanTUN is a tun.Device fed from a channel; what the device writes to it
// is counted and dropped.
type chanTUN struct {
	in       chan []byte
	done     chan struct{}
	events   chan tun.Event
	received atomic.Uint64
	closed   atomic.Bool
}

func newChanTUN() *chanTUN {
	c := &chanTUN{in: make(chan []byte, 4096), done: make(chan struct{}), events: make(chan tun.Event, 1)}
	c.events <- tun.EventUp
	return c
}

func (c *chanTUN) File() *os.File           { return nil }
func (c *chanTUN) Name() (string, error)    { return "raw", nil }
func (c *chanTUN) MTU() (int, error)        { return 1420, nil }
func (c *chanTUN) Events() <-chan tun.Event { return c.events }
func (c *chanTUN) BatchSize() int           { return 128 }

func (c *chanTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		var p []byte
		if n == 0 {
			select {
			case p = <-c.in:
			case <-c.done:
				return 0, os.ErrClosed
			}
		} else {
			select {
			case p = <-c.in:
			default:
				return n, nil
			}
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
	}
	return n, nil
}

func (c *chanTUN) Write(bufs [][]byte, offset int) (int, error) {
	c.received.Add(uint64(len(bufs)))
	return len(bufs), nil
}

func (c *chanTUN) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		close(c.done)
		close(c.events)
	}
	return nil
}

// ipv4Packet builds an IPv4 packet from src to dst carrying payload of
// protocol proto; flagsFrag is the flags and fragment offset field.
func ipv4Packet(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, id uint16, flagsFrag uint16, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		ID:          id,
		TTL:         64,
		Protocol:    uint8(proto),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	b[6], b[7] = byte(flagsFrag>>8), byte(flagsFrag)
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

// tcpSegment builds a TCP header (no payload) with a valid checksum.
func tcpSegment(src, dst netip.AddrPort, seq uint32, flags header.TCPFlags) []byte {
	b := make([]byte, header.TCPMinimumSize)
	t := header.TCP(b)
	t.Encode(&header.TCPFields{
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		SeqNum:     seq,
		DataOffset: header.TCPMinimumSize,
		Flags:      flags,
		WindowSize: 65535,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber,
		tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4()), uint16(len(b)))
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return b
}

// icmpv4Error builds an ICMPv4 error (type, code, 32-bit rest: the next-hop
// MTU for "fragmentation needed") from src quoting the first 28 bytes of
// quoted, as a router on the path would.
func icmpv4Error(src netip.Addr, typ, code uint8, rest uint32, quoted []byte) []byte {
	q := quoted[:min(len(quoted), header.IPv4MinimumSize+8)]
	icmp := make([]byte, header.ICMPv4MinimumSize+len(q))
	icmp[0], icmp[1] = typ, code
	icmp[4], icmp[5], icmp[6], icmp[7] = byte(rest>>24), byte(rest>>16), byte(rest>>8), byte(rest)
	copy(icmp[header.ICMPv4MinimumSize:], q)
	c := ^checksum.Checksum(icmp, 0)
	icmp[2], icmp[3] = byte(c>>8), byte(c)
	// The error goes back to the quoted packet's source.
	return ipv4Packet(src, netip.AddrFrom4([4]byte(q[12:16])), header.ICMPv4ProtocolNumber, 1, 0, icmp)
}
