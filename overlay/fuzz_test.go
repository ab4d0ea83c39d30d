package overlay

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay/memnet"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Seeds: an IPv4 echo request, an IPv6 echo request, an IPv4 TCP SYN and
// an IPv4 UDP datagram, as a peer would send them.
var packetSeeds = []string{
	"45000054000040004001000064500b0a64510014" + "0800f7ff00010001" + "68656c6c6f",
	"6000000000083a40fd000080000000000000000000000010fd000081000000000000000000000010" + "8000000000010001",
	"4500003c000040004006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000",
	"4500002000004000401100006450010a64510014" + "d431003500000000" + "6869",
}

func FuzzEchoResponder(f *testing.F) {
	for _, s := range packetSeeds {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	e := &echoResponder{
		self:  netip.MustParseAddr("100.80.0.1"),
		allow: func(src, dst netip.Addr) bool { return true },
		reply: func(pkt []byte) {
			if len(pkt) < 20 {
				panic("short reply")
			}
		},
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		e.handle(pkt)
	})
}

// FuzzLinkWrite feeds arbitrary packets from a peer through the link into a
// real stack (GRO, IP, TCP, UDP, ICMP): nothing may panic.
func FuzzLinkWrite(f *testing.F) {
	for _, s := range packetSeeds {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	o, err := New(Config{
		Bind:    memnet.NewSwitch().BindAt(netip.MustParseAddrPort("10.0.0.1:51820")),
		Address: netip.MustParseAddr("100.80.0.1"),
		Handler: Handler{
			TCP: func(r *TCPRequest) { r.Reject() },
			UDP: func(src, dst netip.AddrPort) func(net.Conn) { return nil },
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	defer o.Close()
	tun := (*tunSide)(o.link)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		buf := make([]byte, 16+len(pkt))
		copy(buf[16:], pkt)
		tun.Write([][]byte{buf, buf}, 16)
	})
}

// newBareOverlay is an Overlay's stack, link and inbound hook without a
// WireGuard device, so that a test owns both sides of the link: it writes
// packets as the device would and reads what the stack sends. It repeats
// the middle of newOverlay.
func newBareOverlay(tb testing.TB, h Handler) *Overlay {
	cfg := Config{Address: netip.MustParseAddr("100.80.0.1"), MTU: defaultMTU, Handler: h, Logger: slog.New(slog.DiscardHandler)}
	cfg.TCP.setDefaults()
	o := &Overlay{cfg: cfg, log: cfg.Logger, link: newLink(cfg.MTU), inflight: &sourceLimiter{limit: cfg.TCP.MaxInFlightPerSource}}
	echo := &echoResponder{self: cfg.Address, allow: h.Ping, reply: o.link.inject}
	o.link.intercept = echo.handle
	s, err := newStack(o.link, cfg.Address, cfg.TCP)
	if err != nil {
		tb.Fatal(err)
	}
	o.stack = s
	fwd := tcp.NewForwarder(s, 0, cfg.TCP.MaxInFlight, o.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, o.tcpPacketHandler(fwd))
	s.SetTransportProtocolHandler(udp.ProtocolNumber, o.handleUDP)
	tb.Cleanup(o.close)
	return o
}

// acceptingHandler accepts every flow and echoes it.
var acceptingHandler = Handler{
	TCP: func(r *TCPRequest) {
		c, err := r.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	},
	UDP: func(src, dst netip.AddrPort) func(net.Conn) {
		return func(c net.Conn) {
			c.SetDeadline(time.Now().Add(time.Second))
			io.Copy(c, c)
		}
	},
	Ping: func(src, dst netip.Addr) bool { return true },
}

// liveConn opens a TCP connection from 100.80.11.10:54321 to
// 100.81.0.10:443 through o's link by hand (SYN, SYN-ACK, ACK) and then
// drains whatever the stack sends for the rest of the test.
func liveConn(tb testing.TB, o *Overlay) {
	tun := (*tunSide)(o.link)
	watchdog := time.AfterFunc(10*time.Second, o.link.shutdown) // Read fails: no SYN-ACK
	defer watchdog.Stop()
	syn := hexPacket("45000028000040004006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000")
	fixChecksums(syn)
	tun.Write([][]byte{syn}, 0)
	bufs := [][]byte{make([]byte, 1<<16)}
	sizes := []int{0}
	for {
		if _, err := tun.Read(bufs, sizes, 0); err != nil {
			tb.Fatalf("no SYN-ACK for the live connection: %v", err)
		}
		p := bufs[0][:sizes[0]]
		if len(p) >= 40 && p[9] == 6 && p[33] == 0x12 { // SYN-ACK
			ack := hexPacket("4500002800004000400600006450" + "0b0a6451000a" + "d43101bb00000002000000005010ffff00000000")
			binary.BigEndian.PutUint32(ack[28:32], binary.BigEndian.Uint32(p[24:28])+1)
			fixChecksums(ack)
			tun.Write([][]byte{ack}, 0)
			break
		}
	}
	go func() {
		for {
			if _, err := tun.Read(bufs, sizes, 0); err != nil {
				return
			}
		}
	}()
}

func hexPacket(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// fixChecksums sets the IPv4 header checksum of pkt (a 20-byte header),
// and the ICMP checksum when it carries ICMPv4.
func fixChecksums(pkt []byte) {
	if pkt[0]>>4 != 4 {
		return
	}
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:12], ^checksum.Checksum(pkt[:20], 0))
	if pkt[9] == protoICMPv4 && len(pkt) >= 28 {
		pkt[22], pkt[23] = 0, 0
		binary.BigEndian.PutUint16(pkt[22:24], ^checksum.Checksum(pkt[20:], 0))
	}
}

// sequenceSeeds are multi-packet inputs for FuzzLinkSequence, each packet
// prefixed by its 2-byte length: two IPv4 fragments of one UDP datagram,
// and ICMP errors (frag-needed, port unreachable) quoting the live
// connection of liveConn.
var sequenceSeeds = [][]string{
	{
		"4500003c004d20004011000064500b0a64510014" + "0fa000350030000000000000000000000000000000000000000000000000000000000000",
		"4500003000 4d00054011000064500b0a64510014" + "000000000000000000000000000000000000000000000000",
	},
	{"4500003800000000400100006450010064510014" + "0304000000000044" + "450000280007400040060000645100" + "0a64500b0a01bbd43100000001"},
	{"4500003800000000400100006450010064510014" + "0303000000000000" + "450000280007400040060000645100" + "0a64500b0a01bbd43100000001"},
	{"6000000000303a40fd000080000000000000000000000010fd000081000000000000000000000010" + "02000000000000446000000000000600fd000081000000000000000000000010fd000080000000000000000000000010"},
}

// FuzzLinkSequence writes a sequence of packets (each prefixed by a 2-byte
// length) from a peer into a stack whose handlers accept every flow and
// that has a live TCP connection; the sequence goes in as one batch (GRO)
// and again packet by packet. Nothing may panic, and no ICMP error or
// neighbour-discovery message may reach the stack (see icmp.go).
func FuzzLinkSequence(f *testing.F) {
	for _, seq := range sequenceSeeds {
		var in []byte
		for _, s := range seq {
			p := hexPacket(strings.ReplaceAll(s, " ", ""))
			fixChecksums(p)
			in = binary.BigEndian.AppendUint16(in, uint16(len(p)))
			in = append(in, p...)
		}
		f.Add(in)
	}
	o := newBareOverlay(f, acceptingHandler)
	liveConn(f, o)
	tun := (*tunSide)(o.link)
	f.Fuzz(func(t *testing.T, in []byte) {
		var bufs [][]byte
		for len(in) >= 2 {
			k := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			if k > 0 {
				bufs = append(bufs, append(make([]byte, 0, k), in[2:2+k]...))
			}
			in = in[2+k:]
		}
		before := icmpErrorsReceived(o)
		tun.Write(bufs, 0)
		for _, b := range bufs {
			tun.Write([][]byte{b}, 0)
		}
		if n := icmpErrorsReceived(o) - before; n != 0 {
			t.Fatalf("%d ICMP errors or NDP messages reached the stack", n)
		}
	})
}

// icmpErrorsReceived counts the ICMP messages the stack received other than
// echo requests and replies.
func icmpErrorsReceived(o *Overlay) uint64 {
	st := o.stack.Stats().ICMP
	v4, v6 := st.V4.PacketsReceived, st.V6.PacketsReceived
	n := uint64(0)
	for _, c := range []*tcpip.StatCounter{
		v4.DstUnreachable, v4.SrcQuench, v4.Redirect, v4.TimeExceeded, v4.ParamProblem,
		v4.Timestamp, v4.InfoRequest,
		v6.DstUnreachable, v6.PacketTooBig, v6.TimeExceeded, v6.ParamProblem, v6.RouterSolicit,
		v6.RouterAdvert, v6.NeighborSolicit, v6.NeighborAdvert, v6.RedirectMsg,
		v6.MulticastListenerQuery, v6.MulticastListenerReport,
	} {
		n += c.Value()
	}
	return n
}
