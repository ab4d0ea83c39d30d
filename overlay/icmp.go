package overlay

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// The link's inbound hook (handle) runs on the device's write path, before
// a packet reaches gVisor, and keeps three kinds of packet from it:
//
//   - ICMP echo requests are answered here: gVisor in promiscuous mode would
//     answer an echo to any address, and the policy says which addresses may
//     answer.
//   - Every other ICMP message but echo replies is dropped. gVisor, with a
//     promiscuous and spoofing NIC, matches an ICMP error to an endpoint by
//     the 4-tuple it quotes alone, so any peer could forge "fragmentation
//     needed, MTU 68" against another peer's connection (its MSS would drop
//     for good) or "port unreachable" against another peer's UDP flow (it
//     would end). Nothing here needs them: peers sit behind WireGuard at a
//     fixed MTU, so gVisor's path MTU discovery has nothing to learn, and a
//     TCP connection to a dead peer ends by timeout instead of at once.
//     NDP, MLD and redirects are dropped as well: a point-to-point L3 link
//     has no neighbours to discover.
//   - IP fragments are dropped. gVisor reassembles them in one buffer shared
//     by all peers, so one peer's incomplete fragments could starve the
//     others'; WireGuard peers at MTU 1420 do not fragment TCP (MSS) and
//     their UDP applications keep datagrams under the path MTU (DNS
//     queries, QUIC), so a datagram over 1392 bytes (IPv4) is all that is
//     lost.

const (
	ipv4HeaderMin = 20
	ipv6Header    = 40
	protoICMPv4   = 1
	protoICMPv6   = 58
	icmpv4Echo    = 8
	icmpv4Reply   = 0
	icmpv6Echo    = 128
	icmpv6Reply   = 129
	replyHopLimit = 64

	// IPv6 extension headers walked to reach the upper layer.
	ipv6HopByHop      = 0
	ipv6Routing       = 43
	ipv6Fragment      = 44
	ipv6DestOpts      = 60
	ipv6MaxExtHeaders = 8 // walked before giving up (dropped)
)

// echoResponder decides and builds echo replies, and filters inbound
// packets (see above).
type echoResponder struct {
	self  netip.Addr
	allow func(src, dst netip.Addr) bool // nil: only self
	reply func(pkt []byte)               // sends a built reply to the device
}

// handle consumes pkt (true) when it is a fragment or an ICMP message other
// than an echo reply, which it drops, or an echo request, which it answers
// when allowed. Any other packet is left to the stack (false), including
// malformed ones, which the stack drops.
func (e *echoResponder) handle(pkt []byte) bool {
	switch pkt[0] >> 4 {
	case 4:
		return e.handle4(pkt)
	case 6:
		return e.handle6(pkt)
	}
	return false
}

func (e *echoResponder) allowed(src, dst netip.Addr) bool {
	if dst == e.self {
		return true
	}
	return e.allow != nil && e.allow(src, dst)
}

func (e *echoResponder) handle4(pkt []byte) bool {
	if len(pkt) < ipv4HeaderMin {
		return false
	}
	if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		return true // a fragment (more fragments, or an offset)
	}
	if pkt[9] != protoICMPv4 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderMin || total > len(pkt) || total < ihl+8 {
		return true // ICMP too short to be an echo
	}
	icmp := pkt[ihl:total]
	switch {
	case icmp[0] == icmpv4Reply:
		return false
	case icmp[0] != icmpv4Echo || icmp[1] != 0:
		return true
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	if !e.allowed(src, dst) {
		return true
	}
	out := make([]byte, ipv4HeaderMin+len(icmp))
	out[0] = 0x45
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	binary.BigEndian.PutUint16(out[4:6], binary.BigEndian.Uint16(pkt[4:6]))
	out[8] = replyHopLimit
	out[9] = protoICMPv4
	copy(out[12:16], pkt[16:20])
	copy(out[16:20], pkt[12:16])
	binary.BigEndian.PutUint16(out[10:12], ^checksum.Checksum(out[:ipv4HeaderMin], 0))
	r := out[ipv4HeaderMin:]
	copy(r, icmp)
	r[0] = icmpv4Reply
	r[2], r[3] = 0, 0
	binary.BigEndian.PutUint16(r[2:4], ^checksum.Checksum(r, 0))
	e.reply(out)
	return true
}

func (e *echoResponder) handle6(pkt []byte) bool {
	if len(pkt) < ipv6Header {
		return false
	}
	plen := int(binary.BigEndian.Uint16(pkt[4:6]))
	if ipv6Header+plen > len(pkt) {
		return false
	}
	proto, off, ok := upperLayer6(pkt[:ipv6Header+plen])
	switch {
	case !ok:
		return true // a fragment, or extension headers that do not parse
	case proto != protoICMPv6:
		return false
	case ipv6Header+plen < off+8:
		return true // ICMPv6 too short to be an echo
	}
	icmp := pkt[off : ipv6Header+plen]
	switch {
	case icmp[0] == icmpv6Reply:
		return false
	case icmp[0] != icmpv6Echo || icmp[1] != 0:
		return true
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	if dst.IsMulticast() {
		return false
	}
	if !e.allowed(src, dst) {
		return true
	}
	// The reply carries no extension headers.
	out := make([]byte, ipv6Header+len(icmp))
	out[0] = 0x60
	binary.BigEndian.PutUint16(out[4:6], uint16(len(icmp)))
	out[6] = protoICMPv6
	out[7] = replyHopLimit
	copy(out[8:24], pkt[24:40])
	copy(out[24:40], pkt[8:24])
	r := out[ipv6Header:]
	copy(r, icmp)
	r[0] = icmpv6Reply
	r[2], r[3] = 0, 0
	// Pseudo-header: src, dst, upper-layer length, next header.
	var ph [8]byte
	binary.BigEndian.PutUint32(ph[0:4], uint32(len(icmp)))
	ph[7] = protoICMPv6
	sum := checksum.Checksum(out[8:40], 0)
	sum = checksum.Checksum(ph[:], sum)
	sum = checksum.Checksum(r, sum)
	binary.BigEndian.PutUint16(r[2:4], ^sum)
	e.reply(out)
	return true
}

// upperLayer6 walks pkt's IPv6 extension headers to the upper-layer
// protocol and its offset. false: a fragment header, or extension headers
// that are truncated or too many.
func upperLayer6(pkt []byte) (proto byte, off int, ok bool) {
	proto, off = pkt[6], ipv6Header
	for range ipv6MaxExtHeaders {
		switch proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if len(pkt) < off+8 {
				return 0, 0, false
			}
			proto, off = pkt[off], off+(int(pkt[off+1])+1)*8
		case ipv6Fragment:
			return 0, 0, false
		default:
			return proto, off, off <= len(pkt)
		}
	}
	return 0, 0, false
}
