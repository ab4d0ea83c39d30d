package overlay

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ICMP echo is answered here, on the device's write path, before the packet
// reaches gVisor: gVisor in promiscuous mode would answer an echo to any
// address, and the policy says which addresses may answer.

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
)

// echoResponder decides and builds echo replies.
type echoResponder struct {
	self  netip.Addr
	allow func(src, dst netip.Addr) bool // nil: only self
	reply func(pkt []byte)               // sends a built reply to the device
}

// handle consumes pkt when it is an ICMP echo request: it answers it when
// allowed and drops it otherwise. Any other packet is left alone (false).
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
	if len(pkt) < ipv4HeaderMin || pkt[9] != protoICMPv4 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderMin || total > len(pkt) || total < ihl+8 {
		return false
	}
	// Fragments go to the stack, which reassembles and drops them: echo
	// requests are answered only when whole.
	if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		return false
	}
	icmp := pkt[ihl:total]
	if icmp[0] != icmpv4Echo || icmp[1] != 0 {
		return false
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
	// Only echo requests directly after the fixed header are recognised;
	// with extension headers they go to the stack (and are not answered
	// for foreign addresses, since the stack only answers its own).
	if len(pkt) < ipv6Header+8 || pkt[6] != protoICMPv6 {
		return false
	}
	plen := int(binary.BigEndian.Uint16(pkt[4:6]))
	if ipv6Header+plen > len(pkt) || plen < 8 {
		return false
	}
	icmp := pkt[ipv6Header : ipv6Header+plen]
	if icmp[0] != icmpv6Echo || icmp[1] != 0 {
		return false
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	if dst.IsMulticast() {
		return false
	}
	if !e.allowed(src, dst) {
		return true
	}
	out := make([]byte, ipv6Header+plen)
	out[0] = 0x60
	binary.BigEndian.PutUint16(out[4:6], uint16(plen))
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
	binary.BigEndian.PutUint32(ph[0:4], uint32(plen))
	ph[7] = protoICMPv6
	sum := checksum.Checksum(out[8:40], 0)
	sum = checksum.Checksum(ph[:], sum)
	sum = checksum.Checksum(r, sum)
	binary.BigEndian.PutUint16(r[2:4], ^sum)
	e.reply(out)
	return true
}
