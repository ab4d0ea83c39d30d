// Package communityid computes the Community ID flow hash, version 1
// (https://github.com/corelight/community-id-spec): one string per flow,
// the same in both directions and from every observer, that Zeek,
// Suricata, Arkime and Elastic already log. wardgate puts it on every flow
// event of the audit log so that the records one flow leaves on several
// gateways, and on the network monitors around them, join on one field.
//
// Covered: TCP, UDP and SCTP (addresses and ports), ICMP and ICMPv6 (type
// and code mapped to ports as the spec, after Zeek, does), and any other
// protocol by its addresses alone. Tunnels and encapsulations are hashed
// as their outer flow, as the spec leaves them.
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"net/netip"
)

// IP protocol numbers the hash treats specially.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// ID returns the Community ID of a flow from src to dst over IP protocol
// proto, with the default seed 0.
//
// For TCP, UDP and SCTP the ports count; for other protocols only the
// addresses do, except ICMP and ICMPv6, whose flows are better named with
// IDICMP: given to ID, their source port is taken as the message type and
// the destination port as the code. An IPv4 address mapped into IPv6
// counts as the IPv4 address. An invalid address gives "".
func ID(src, dst netip.AddrPort, proto uint8) string { return IDWithSeed(0, src, dst, proto) }

// IDWithSeed is ID with a seed: observers that agree on a seed other than
// 0 get IDs that do not join with anyone else's.
func IDWithSeed(seed uint16, src, dst netip.AddrPort, proto uint8) string {
	switch proto {
	case protoTCP, protoUDP, protoSCTP:
		return hash(seed, src.Addr(), dst.Addr(), proto, src.Port(), dst.Port(), true, false)
	case protoICMP, protoICMPv6:
		return IDICMPWithSeed(seed, src.Addr(), dst.Addr(), uint8(src.Port()), uint8(dst.Port()))
	}
	return hash(seed, src.Addr(), dst.Addr(), proto, 0, 0, false, false)
}

// IDICMP returns the Community ID, seed 0, of an ICMP message (ICMPv6 when
// the addresses are IPv6) of type typ and code from src to dst. A request
// and its reply (echo, timestamp, router, neighbor and MLD solicitations,
// ...) get one ID; other messages (errors, redirects) are one-way and are
// hashed from their sender, type and code as they are.
func IDICMP(src, dst netip.Addr, typ, code uint8) string {
	return IDICMPWithSeed(0, src, dst, typ, code)
}

// IDICMPWithSeed is IDICMP with a seed.
func IDICMPWithSeed(seed uint16, src, dst netip.Addr, typ, code uint8) string {
	src, dst = src.Unmap(), dst.Unmap()
	proto, counter := uint8(protoICMP), icmpCounterpart
	if src.Is6() {
		proto, counter = protoICMPv6, icmp6Counterpart
	}
	if reply, ok := counter[typ]; ok {
		return hash(seed, src, dst, proto, uint16(typ), uint16(reply), true, false)
	}
	return hash(seed, src, dst, proto, uint16(typ), uint16(code), true, true)
}

// icmpCounterpart and icmp6Counterpart map each ICMP message type that is
// half of a request/reply pair to the other half; the pair's two types
// stand in for the ports. The tables are Zeek's (ICMP.cc,
// ICMP4_counterpart and ICMP6_counterpart), as the spec prescribes.
var (
	icmpCounterpart = map[uint8]uint8{
		8: 0, 0: 8, // echo
		13: 14, 14: 13, // timestamp
		15: 16, 16: 15, // information
		10: 9, 9: 10, // router solicitation, advertisement
		17: 18, 18: 17, // address mask
	}
	icmp6Counterpart = map[uint8]uint8{
		128: 129, 129: 128, // echo
		130: 131, 131: 130, // multicast listener query, report
		133: 134, 134: 133, // router solicitation, advertisement
		135: 136, 136: 135, // neighbor solicitation, advertisement
		139: 140, 140: 139, // node information query, reply
		144: 145, 145: 144, // home agent address discovery
	}
)

// hash is the spec's: SHA-1 over seed, the two addresses, protocol, a zero
// byte and, if withPorts, the two ports, all big-endian, with the
// endpoints in order (smaller address first, equal addresses: smaller
// port first) unless oneWay; then "1:" and the digest in base64.
func hash(seed uint16, src, dst netip.Addr, proto uint8, sport, dport uint16, withPorts, oneWay bool) string {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return ""
	}
	if c := src.Compare(dst); !oneWay && (c > 0 || c == 0 && sport > dport) {
		src, dst, sport, dport = dst, src, dport, sport
	}
	var in [2 + 16 + 16 + 1 + 1 + 2 + 2]byte
	n := 0
	put16 := func(v uint16) {
		in[n], in[n+1] = byte(v>>8), byte(v)
		n += 2
	}
	put16(seed)
	for _, a := range [2]netip.Addr{src, dst} {
		b := a.As16()
		if a.Is4() {
			n += copy(in[n:], b[12:])
		} else {
			n += copy(in[n:], b[:])
		}
	}
	in[n], in[n+1] = proto, 0
	n += 2
	if withPorts {
		put16(sport)
		put16(dport)
	}
	sum := sha1.Sum(in[:n])
	const prefix = "1:"
	var out [len(prefix) + 28]byte // 28: base64 of 20 bytes
	copy(out[:], prefix)
	base64.StdEncoding.Encode(out[len(prefix):], sum[:])
	return string(out[:])
}
