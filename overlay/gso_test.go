package overlay

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gsoPacket builds a host-GSO TCP packet as gVisor's TCP hands it to the
// link: one IPv4 header, one TCP header with a partial checksum, and
// payload split into segments of mss.
func gsoPacket(payload []byte, mss int, flags header.TCPFlags) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv4MinimumSize + header.TCPMinimumSize,
		Payload:            buffer.MakeWithData(payload),
	})
	src, dst := tcpip.AddrFrom4([4]byte{100, 81, 0, 10}), tcpip.AddrFrom4([4]byte{100, 80, 1, 10})
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize))
	tcp.Encode(&header.TCPFields{SrcPort: 443, DstPort: 50000, SeqNum: 0xfffff000, AckNum: 7,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 1000,
		Checksum: header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, 0)})
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(min(65535, header.IPv4MinimumSize+header.TCPMinimumSize+len(payload))),
		ID: 65534, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset,
		MSS: uint16(mss), L3HdrLen: header.IPv4MinimumSize, MaxSize: hostGSOMaxSize}
	return pkt
}

func TestSplitGSO(t *testing.T) {
	const mss = 1000
	payload := make([]byte, 3*mss+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pkt := gsoPacket(payload, mss, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin|header.TCPFlagCwr)
	defer pkt.DecRef()

	// Two bufs at a time, as a Read with little room would.
	var segs [][]byte
	next := 0
	for range 3 {
		bufs := [][]byte{make([]byte, 2000), make([]byte, 2000)}
		sizes := make([]int, 2)
		var n int
		n, next = splitGSO(pkt, next, bufs, sizes, 10)
		for i := range n {
			segs = append(segs, bufs[i][10:10+sizes[i]])
		}
		if next == 0 {
			break
		}
	}
	if len(segs) != 4 {
		t.Fatalf("%d segments, want 4", len(segs))
	}
	var got []byte
	for i, s := range segs {
		ip := header.IPv4(s)
		if !ip.IsValid(len(s)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(s) {
			t.Errorf("segment %d: bad IPv4 header (length %d of %d)", i, ip.TotalLength(), len(s))
		}
		if ip.ID() != uint16(65534+i) {
			t.Errorf("segment %d: ID %d", i, ip.ID())
		}
		tcp := header.TCP(ip.Payload())
		data := tcp.Payload()
		if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(data, 0), uint16(len(data))) {
			t.Errorf("segment %d: bad TCP checksum", i)
		}
		if want := uint32(0xfffff000) + uint32(i*mss); tcp.SequenceNumber() != want {
			t.Errorf("segment %d: seq %#x, want %#x", i, tcp.SequenceNumber(), want)
		}
		f := tcp.Flags()
		last, first := i == len(segs)-1, i == 0
		if f.Contains(header.TCPFlagFin) != last || f.Contains(header.TCPFlagPsh) != last || f.Contains(header.TCPFlagCwr) != first || !f.Contains(header.TCPFlagAck) {
			t.Errorf("segment %d: flags %v", i, f)
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("payload not reassembled intact")
	}
}

// A pure ACK under host GSO is one segment with a completed checksum.
func TestSplitGSOEmpty(t *testing.T) {
	pkt := gsoPacket(nil, 1000, header.TCPFlagAck)
	defer pkt.DecRef()
	bufs, sizes := [][]byte{make([]byte, 100)}, []int{0}
	n, next := splitGSO(pkt, 0, bufs, sizes, 0)
	if n != 1 || next != 0 || sizes[0] != 40 {
		t.Fatalf("n %d next %d size %d", n, next, sizes[0])
	}
	ip := header.IPv4(bufs[0][:40])
	tcp := header.TCP(ip.Payload())
	if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), 0, 0) {
		t.Error("bad TCP checksum")
	}
}

// Read splits a GSO packet over several calls when the batch is small.
func TestReadSplitsAcrossBatches(t *testing.T) {
	l := newLink(1420)
	l.batch = 3
	tun := (*tunSide)(l)
	pkt := gsoPacket(make([]byte, 7*1000), 1000, header.TCPFlagAck)
	l.out <- pkt
	small := make([]byte, 28)
	small[0] = 0x45
	l.inject(small)
	var total []int
	for len(total) < 8 {
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 2000)
		}
		sizes := make([]int, 8)
		n, err := tun.Read(bufs, sizes, 0)
		if err != nil || n == 0 || n > 3 {
			t.Fatalf("Read: %d, %v", n, err)
		}
		total = append(total, sizes[:n]...)
	}
	want := []int{1040, 1040, 1040, 1040, 1040, 1040, 1040, 28}
	if len(total) != len(want) {
		t.Fatalf("sizes %v, want %v", total, want)
	}
	for i := range want {
		if total[i] != want[i] {
			t.Fatalf("sizes %v, want %v", total, want)
		}
	}
}
