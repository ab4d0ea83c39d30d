package dnsfilter

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/policy"
)

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
)

// internal reports whether a is an address an answer from the internet must
// not point to: private (RFC 1918, ULA), shared (RFC 6598), loopback,
// link-local, unspecified, "this network", or inside the overlay's peer or
// service prefixes.
func internal(a netip.Addr, ov policy.Overlay) bool {
	a = a.Unmap()
	return !a.IsValid() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || sharedSpace.Contains(a) || thisNetwork.Contains(a) ||
		ov.Prefix.IsValid() && ov.Prefix.Contains(a) ||
		ov.ServicePrefix.IsValid() && ov.ServicePrefix.Contains(a)
}

// stripInternal removes A and AAAA records pointing at internal addresses
// from the answer and additional sections of m, in place, and reports how
// many it removed.
func stripInternal(m *dns.Msg, ov policy.Overlay) int {
	n := 0
	m.Answer, n = filterRRs(m.Answer, ov, n)
	m.Extra, n = filterRRs(m.Extra, ov, n)
	return n
}

func filterRRs(rrs []dns.RR, ov policy.Overlay, n int) ([]dns.RR, int) {
	out := rrs[:0]
	for _, rr := range rrs {
		if a, ok := rrAddr(rr); ok && internal(a, ov) {
			n++
			continue
		}
		out = append(out, rr)
	}
	return out, n
}

// rrAddr returns the address of an A or AAAA record (the zero Addr when the
// record holds no valid address) and whether rr is one.
func rrAddr(rr dns.RR) (netip.Addr, bool) {
	var ip net.IP
	switch r := rr.(type) {
	case *dns.A:
		ip = r.A
	case *dns.AAAA:
		ip = r.AAAA
	default:
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, true
	}
	if _, isA := rr.(*dns.A); isA {
		a = a.Unmap()
	}
	return a, true
}
