package overlay

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// synPacket builds a TCP SYN from src to dst with an MSS option.
func synPacket(src, dst netip.AddrPort, mss uint16) []byte {
	b := buildRST(src, dst, 1000)
	ipLen := len(b) - tcpHeaderMin
	b = append(b, 0, 0, 0, 0, 1, 1, 1, 0) // room for MSS, two no-ops, end
	t := header.TCP(b[ipLen:])
	t.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, DataOffset: tcpHeaderMin + 8, Flags: header.TCPFlagSyn, WindowSize: 65535})
	t[20], t[21] = tcpOptMSS, 4
	binary.BigEndian.PutUint16(t[22:], mss)
	fixLengths(b, ipLen)
	s, d := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	t.SetChecksum(0)
	t.SetChecksum(^t.CalculateChecksum(header.PseudoHeaderChecksum(protoTCP, s, d, uint16(len(t)))))
	return b
}

func fixLengths(b []byte, ipLen int) {
	if ipLen == ipv4HeaderMin {
		ip := header.IPv4(b)
		ip.SetTotalLength(uint16(len(b)))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b).SetPayloadLength(uint16(len(b) - ipLen))
	}
}

func tcpChecksumValid(t *testing.T, b []byte, p packet) bool {
	t.Helper()
	s, d := tcpip.AddrFromSlice(p.src.Addr().AsSlice()), tcpip.AddrFromSlice(p.dst.Addr().AsSlice())
	seg := header.TCP(b[p.l4:p.end])
	return ^seg.CalculateChecksum(header.PseudoHeaderChecksum(protoTCP, s, d, uint16(len(seg)))) == 0
}

func TestParseAndClampMSS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		mss      uint16
		want     uint16
	}{
		{"v4 over", "100.80.1.10:40000", "100.81.0.10:443", 1460, 1380},
		{"v4 under stays", "100.80.1.10:40000", "100.81.0.10:443", 1200, 1200},
		{"v6 over", "[fd00::10]:40000", "[fd01::10]:443", 1440, 1360},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
			b := synPacket(src, dst, tc.mss)
			p, ok := parsePacket(b)
			if !ok || p.src != src || p.dst != dst || p.proto != protoTCP || p.flags != tcpSYN || p.seq != 1000 || p.payload != 0 {
				t.Fatalf("parse: ok=%v %+v", ok, p)
			}
			rt := &relayTable{mtu: 1420}
			clampMSS(b, &p, rt.maxMSS(p.v6))
			if got := binary.BigEndian.Uint16(b[p.l4+22:]); got != tc.want {
				t.Fatalf("MSS %d, want %d", got, tc.want)
			}
			if !tcpChecksumValid(t, b, p) {
				t.Fatal("checksum wrong after clamping")
			}
		})
	}
}

func TestBuildRSTIsValid(t *testing.T) {
	for _, pair := range [][2]string{{"100.81.0.10:443", "100.80.1.10:40000"}, {"[fd01::10]:443", "[fd00::10]:40000"}} {
		src, dst := netip.MustParseAddrPort(pair[0]), netip.MustParseAddrPort(pair[1])
		b := buildRST(src, dst, 12345)
		p, ok := parsePacket(b)
		if !ok || p.src != src || p.dst != dst || p.flags != tcpRST || p.seq != 12345 {
			t.Fatalf("%v: parse ok=%v %+v", src, ok, p)
		}
		if !tcpChecksumValid(t, b, p) {
			t.Fatalf("%v: bad TCP checksum", src)
		}
		if src.Addr().Is4() && !header.IPv4(b).IsChecksumValid() {
			t.Fatal("bad IPv4 header checksum")
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := synPacket(netip.MustParseAddrPort("100.80.1.10:1"), netip.MustParseAddrPort("100.81.0.10:2"), 1400)
	frag := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(frag[6:8], 0x2000) // more fragments
	short := good[:30]
	badHL := append([]byte(nil), good...)
	badHL[ipv4HeaderMin+12] = 0xf0 // TCP header longer than the packet
	for name, b := range map[string][]byte{"fragment": frag, "truncated": short, "tcp header length": badHL, "empty": nil} {
		if _, ok := parsePacket(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestChecksumUpdateMatchesRecompute(t *testing.T) {
	// RFC 1624's worked case: the incremental result equals a recompute.
	words := []uint16{0x4500, 0x0073, 0x0000, 0x4000, 0x4011, 0xc0a8, 0x0001, 0xc0a8, 0x00c7}
	sum := func(ws []uint16) uint16 {
		var s uint32
		for _, w := range ws {
			s += uint32(w)
		}
		for s>>16 != 0 {
			s = s&0xffff + s>>16
		}
		return ^uint16(s)
	}
	before := sum(words)
	old := words[3]
	words[3] = 0x1234
	if got, want := checksumUpdate(before, old, 0x1234), sum(words); got != want {
		t.Fatalf("incremental %#x, recomputed %#x", got, want)
	}
}
