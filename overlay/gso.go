package overlay

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// hostGSOMaxSize bounds a TCP segment under host GSO. gVisor lets the TCP
// payload reach MaxSize-61 bytes; with a 20-byte IPv4 header and up to 60
// bytes of TCP header the total must stay within IPv4's 16-bit length.
const hostGSOMaxSize = 65000

// splitGSO writes segment seg onwards of the TCP super-packet pkt (host GSO:
// one IP and TCP header, up to hostGSOMaxSize of payload, TCP checksum not
// computed) into bufs as MSS-sized packets, and returns how many bufs it
// filled and the next segment to write (0 when pkt is done).
//
// Each segment gets the headers of pkt with: IPv4 total length, ID (+1 per
// segment) and header checksum, or the IPv6 payload length; the TCP
// sequence number advanced by the payload before it; FIN and PSH only on
// the last segment and CWR only on the first; a full TCP checksum.
func splitGSO(pkt *stack.PacketBuffer, seg int, bufs [][]byte, sizes []int, offset int) (filled, next int) {
	gso := pkt.GSOOptions
	nh := pkt.NetworkHeader().Slice()
	th := pkt.TransportHeader().Slice()
	hlen := len(nh) + len(th)
	// The payload is read in place from the packet's slices (headers
	// first, then data), from offset hlen.
	slices := pkt.AsSlices()
	dataLen := pkt.Data().Size()
	mss := int(gso.MSS)
	nseg := 1
	if mss > 0 && dataLen > mss {
		nseg = (dataLen + mss - 1) / mss
	} else {
		mss = dataLen
	}
	var (
		src, dst tcpip.Address
		id       uint16
	)
	v4 := gso.Type == stack.GSOTCPv4
	if v4 {
		ip := header.IPv4(nh)
		src, dst, id = ip.SourceAddress(), ip.DestinationAddress(), ip.ID()
	} else {
		ip := header.IPv6(nh)
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	seq := header.TCP(th).SequenceNumber()
	flags := header.TCP(th).Flags()
	for ; seg < nseg && filled < len(bufs); seg++ {
		lo := seg * mss
		hi := min(lo+mss, dataLen)
		out := bufs[filled][offset:]
		if hlen+hi-lo > len(out) {
			// Cannot happen with an MTU-sized MSS; drop the rest.
			return filled, 0
		}
		copy(out, nh)
		copy(out[len(nh):], th)
		copyFrom(out[hlen:hlen+hi-lo], slices, hlen+lo)
		pktLen := hlen + hi - lo
		if v4 {
			ip := header.IPv4(out[:len(nh)])
			ip.SetTotalLength(uint16(pktLen))
			ip.SetID(id + uint16(seg))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			header.IPv6(out[:len(nh)]).SetPayloadLength(uint16(pktLen - len(nh)))
		}
		tcp := header.TCP(out[len(nh):hlen])
		tcp.SetSequenceNumber(seq + uint32(lo))
		f := flags
		if seg != nseg-1 {
			f &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if seg != 0 {
			f &^= header.TCPFlagCwr
		}
		tcp.SetFlags(uint8(f))
		tcp.SetChecksum(0)
		tcpLen := uint16(pktLen - len(nh))
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, tcpLen)
		sum = checksum.Checksum(out[len(nh):pktLen], sum)
		tcp.SetChecksum(^sum)
		sizes[filled] = pktLen
		filled++
	}
	if seg >= nseg {
		seg = 0
	}
	return filled, seg
}

// copyFrom fills dst from the concatenation of slices, starting at offset
// off of it.
func copyFrom(dst []byte, slices [][]byte, off int) {
	for _, s := range slices {
		if len(dst) == 0 {
			return
		}
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n := copy(dst, s[off:])
		dst = dst[n:]
		off = 0
	}
}
