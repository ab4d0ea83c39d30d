package overlay

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// What the relay reads of an IP packet, parsed in place from the bytes
// WireGuard decrypted: no copies, no allocation.

const (
	protoTCP = 6
	protoUDP = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	tcpHeaderMin = 20
	udpHeader    = 8
	tcpOptMSS    = 2
)

// packet is one parsed IP packet: its flow's addresses and ports, and for
// TCP the fields the relay tracks.
type packet struct {
	src, dst netip.AddrPort
	proto    uint8
	v6       bool
	l4       int // offset of the transport header
	end      int // the IP packet's length (a buffer may be longer)
	payload  int // transport payload bytes
	// TCP only.
	flags   uint8
	seq     uint32
	tcpHLen int
	// ICMP only.
	icmpType uint8
}

// parsePacket reads b's IP and transport headers. It refuses what the relay
// does not carry: fragments, IPv6 extension headers, truncated headers.
func parsePacket(b []byte) (p packet, ok bool) {
	if len(b) == 0 {
		return p, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4HeaderMin {
			return p, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < ipv4HeaderMin || total < ihl || total > len(b) {
			return p, false
		}
		if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF or an offset
			return p, false
		}
		p.proto, p.l4, p.end = b[9], ihl, total
		p.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[12:16])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), 0)
	case 6:
		if len(b) < ipv6Header {
			return p, false
		}
		total := ipv6Header + int(binary.BigEndian.Uint16(b[4:6]))
		if total > len(b) {
			return p, false
		}
		p.v6, p.proto, p.l4, p.end = true, b[6], ipv6Header, total
		p.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), 0)
	default:
		return p, false
	}
	return p, p.parseTransport(b)
}

func (p *packet) parseTransport(b []byte) bool {
	t := b[p.l4:p.end]
	switch p.proto {
	case protoTCP:
		if len(t) < tcpHeaderMin {
			return false
		}
		hl := int(t[12]>>4) * 4
		if hl < tcpHeaderMin || hl > len(t) {
			return false
		}
		p.setPorts(t)
		p.tcpHLen, p.flags = hl, t[13]
		p.seq = binary.BigEndian.Uint32(t[4:8])
		p.payload = len(t) - hl
	case protoUDP:
		if len(t) < udpHeader {
			return false
		}
		p.setPorts(t)
		p.payload = len(t) - udpHeader
	case protoICMPv4, protoICMPv6:
		if len(t) < 8 || (p.proto == protoICMPv4) == p.v6 {
			return false
		}
		p.icmpType = t[0]
	default:
		return false
	}
	return true
}

func (p *packet) setPorts(t []byte) {
	p.src = netip.AddrPortFrom(p.src.Addr(), binary.BigEndian.Uint16(t[0:2]))
	p.dst = netip.AddrPortFrom(p.dst.Addr(), binary.BigEndian.Uint16(t[2:4]))
}

// isICMPError reports whether p is an ICMP error message, which quotes the
// packet it is about.
func (p *packet) isICMPError() bool {
	if p.proto == protoICMPv4 {
		switch p.icmpType {
		case 3, 11, 12: // destination unreachable, time exceeded, parameter problem
			return true
		}
		return false
	}
	return p.proto == protoICMPv6 && p.icmpType >= 1 && p.icmpType <= 4
}

// quoted parses the packet an ICMP error quotes: its IP header and the
// first eight bytes of its transport header, which hold the ports.
func (p *packet) quoted(b []byte) (q packet, ok bool) {
	in := b[p.l4+8 : p.end]
	if len(in) == 0 {
		return q, false
	}
	switch in[0] >> 4 {
	case 4:
		if len(in) < ipv4HeaderMin {
			return q, false
		}
		ihl := int(in[0]&0x0f) * 4
		if ihl < ipv4HeaderMin || len(in) < ihl+4 {
			return q, false
		}
		q.proto, q.l4 = in[9], ihl
		q.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[12:16])), 0)
		q.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[16:20])), 0)
	case 6:
		if len(in) < ipv6Header+4 {
			return q, false
		}
		q.v6, q.proto, q.l4 = true, in[6], ipv6Header
		q.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(in[8:24])), 0)
		q.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(in[24:40])), 0)
	default:
		return q, false
	}
	if q.proto != protoTCP && q.proto != protoUDP {
		return q, false
	}
	q.setPorts(in[q.l4:])
	return q, true
}

// clampMSS lowers the MSS option of a TCP SYN in b to max, fixing the
// checksum incrementally, so that a relayed connection's segments fit the
// gateway's MTU on the next hop whatever the client's own MTU.
func clampMSS(b []byte, p *packet, max uint16) {
	t := b[p.l4 : p.l4+p.tcpHLen]
	for i := tcpHeaderMin; i < len(t); {
		switch kind := t[i]; kind {
		case 0: // end of options
			return
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(t) || t[i+1] < 2 || i+int(t[i+1]) > len(t) {
			return
		}
		if t[i] == tcpOptMSS && t[i+1] == 4 {
			old := binary.BigEndian.Uint16(t[i+2:])
			if old > max {
				binary.BigEndian.PutUint16(t[i+2:], max)
				sum := binary.BigEndian.Uint16(t[16:18])
				binary.BigEndian.PutUint16(t[16:18], checksumUpdate(sum, old, max))
			}
			return
		}
		i += int(t[i+1])
	}
}

// checksumUpdate is RFC 1624's incremental update of an Internet checksum
// when one 16-bit word changes from old to new: HC' = ~(~HC + ~m + m').
func checksumUpdate(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}

// buildRST returns a TCP reset from src to dst with sequence number seq:
// how a relay that ends a flow tells each end at once.
func buildRST(src, dst netip.AddrPort, seq uint32) []byte {
	ipLen := ipv4HeaderMin
	if src.Addr().Is6() {
		ipLen = ipv6Header
	}
	b := make([]byte, ipLen+tcpHeaderMin)
	s, d := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	if ipLen == ipv4HeaderMin {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: replyHopLimit, Protocol: protoTCP, SrcAddr: s, DstAddr: d})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: tcpHeaderMin, TransportProtocol: protoTCP, HopLimit: replyHopLimit, SrcAddr: s, DstAddr: d})
	}
	t := header.TCP(b[ipLen:])
	t.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: tcpHeaderMin, Flags: header.TCPFlagRst})
	t.SetChecksum(^t.CalculateChecksum(header.PseudoHeaderChecksum(protoTCP, s, d, tcpHeaderMin)))
	return b
}
