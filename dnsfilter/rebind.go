package dnsfilter

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/policy"
)

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052 well-known prefix
	nat64Local  = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215 local use
	sixToFour   = netip.MustParsePrefix("2002::/16")      // RFC 3056
)

// internal reports whether a is an address an answer from the internet must
// not point to: private (RFC 1918, ULA), shared (RFC 6598), loopback,
// link-local, unspecified, "this network", inside the overlay's peer or
// service prefixes, or an IPv6 address that embeds such an IPv4 address
// (NAT64, 6to4), which a translator on the client's path would turn back
// into it.
func internal(a netip.Addr, ov policy.Overlay) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || sharedSpace.Contains(a) || thisNetwork.Contains(a) ||
		ov.Prefix.IsValid() && ov.Prefix.Contains(a) ||
		ov.ServicePrefix.IsValid() && ov.ServicePrefix.Contains(a) {
		return true
	}
	if !a.Is6() {
		return false
	}
	b := a.As16()
	v4 := func(i, j, k, l int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[j], b[k], b[l]}) }
	switch {
	case nat64.Contains(a):
		return internal(v4(12, 13, 14, 15), ov)
	case sixToFour.Contains(a):
		return internal(v4(2, 3, 4, 5), ov)
	case nat64Local.Contains(a):
		// The operator picks the prefix length inside the /48, so every
		// RFC 6052 position is a candidate (byte 8 is the reserved u
		// octet). At the wrong position a reading holds the prefix's or
		// the suffix's zero bytes: 0.0.0.0/8 is no destination, so such a
		// reading does not count.
		for _, c := range [...]netip.Addr{v4(6, 7, 9, 10), v4(7, 9, 10, 11), v4(9, 10, 11, 12), v4(12, 13, 14, 15)} {
			if !thisNetwork.Contains(c) && internal(c, ov) {
				return true
			}
		}
	}
	return false
}

// rebindGuard strips from upstream replies what an upstream must not be
// able to hand a client of the overlay (DNS rebinding), for one policy:
//
//   - records owned by, and CNAME or DNAME records pointing to, names of
//     the trust: the overlay domain and its subdomains, and the services'
//     extra dns names (otherwise an outside name could alias an internal
//     service and a client re-asking the target would get its VIP);
//   - A and AAAA records of internal addresses (see internal) and of the
//     services' endpoint addresses, even public ones (a flow to an endpoint
//     address is a flow to that service), unless the question matched
//     AllowInternal. Aliases into the trust are stripped even then.
//
// Immutable once built; one is kept per policy (forwarder.guardFor).
type rebindGuard struct {
	view      View
	ov        policy.Overlay
	domain    string
	endpoints map[netip.Addr]bool // single-address endpoints
	nets      []netip.Prefix      // wider endpoint prefixes
}

func newRebindGuard(view View) *rebindGuard {
	g := &rebindGuard{view: view, endpoints: make(map[netip.Addr]bool)}
	if view == nil {
		return g
	}
	g.ov = view.Overlay()
	g.domain = dnsname.Canonical(g.ov.Domain)
	for _, svc := range view.Services() {
		for _, e := range svc.Endpoints {
			if e.Prefix.IsSingleIP() {
				g.endpoints[e.Prefix.Addr().Unmap()] = true
			} else if e.Prefix.IsValid() {
				g.nets = append(g.nets, e.Prefix)
			}
		}
	}
	return g
}

// strip removes what the guard forbids from the answer and additional
// sections of m, in place; allowInternal keeps internal and endpoint
// addresses. It reports how many records it removed.
func (g *rebindGuard) strip(m *dns.Msg, allowInternal bool) int {
	n := 0
	m.Answer, n = g.filter(m.Answer, allowInternal, n)
	m.Extra, n = g.filter(m.Extra, allowInternal, n)
	return n
}

func (g *rebindGuard) filter(rrs []dns.RR, allowInternal bool, n int) ([]dns.RR, int) {
	out := rrs[:0]
	for _, rr := range rrs {
		if g.forbidden(rr, allowInternal) {
			n++
			continue
		}
		out = append(out, rr)
	}
	clear(rrs[len(out):]) // drop references to the removed records
	return out, n
}

func (g *rebindGuard) forbidden(rr dns.RR, allowInternal bool) bool {
	if rr.Header().Rrtype == dns.TypeOPT {
		return false
	}
	if g.ours(rr.Header().Name) {
		return true
	}
	switch r := rr.(type) {
	case *dns.CNAME:
		return g.ours(r.Target)
	case *dns.DNAME:
		return g.ours(r.Target)
	}
	a, ok := rrAddr(rr)
	return ok && !allowInternal && (internal(a, g.ov) || g.endpoint(a))
}

// ours reports whether name is the overlay domain, below it, or a
// service's name.
func (g *rebindGuard) ours(name string) bool {
	name = dnsname.Canonical(name)
	return dnsname.Under(name, g.domain) || g.view != nil && g.view.ServiceByName(name) != nil
}

func (g *rebindGuard) endpoint(a netip.Addr) bool {
	a = a.Unmap()
	if g.endpoints[a] {
		return true
	}
	for _, p := range g.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
