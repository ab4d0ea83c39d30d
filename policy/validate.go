package policy

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/internal/wgkey"
)

// Validation beyond the shape of one element: names, addresses and keys
// that must be unique, and endpoints and LAN sources that must not overlap.

// CheckName reports whether n may name a site, identity, group or rule: 1
// to 64 bytes of letters, digits, '.', '_' and '-'. Names appear in `from`
// lists, test targets and logs, where ':', '*', ',' and spaces would be
// ambiguous.
func CheckName(n string) error {
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if len(n) > maxNameLen {
		return fmt.Errorf("name %s is longer than %d bytes", Quote(n), maxNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("name %s has %q (use letters, digits, '.', '_', '-')", Quote(n), c)
		}
	}
	return nil
}

// checkServiceName: a service name is also a DNS label (NAME.DOMAIN).
func checkServiceName(n string) error {
	if err := dnsname.CheckLabel(n); err != nil {
		return fmt.Errorf("service name %q must be a DNS label: %w", n, err)
	}
	return nil
}

// checkOverlayAddr checks a fixed overlay address of a site or identity: inside
// the prefix, not its network address, and nobody else's. A clash is
// reported on whichever of the two comes later in the file (sites are read
// before identities, but the later line is the one just written).
func (b *builder) checkOverlayAddr(p *Policy, e *elem, key string, a netip.Addr, addrOwner map[netip.Addr]*elem) {
	if !a.IsValid() {
		return
	}
	pfx := p.overlay.Prefix
	if pfx.IsValid() {
		if !pfx.Contains(a) {
			e.errorf(key, "address %s is outside the overlay prefix %s", a, pfx)
		} else if a == pfx.Addr() {
			e.errorf(key, "address %s is the network address of %s", a, pfx)
		}
	}
	if other, ok := addrOwner[a]; ok {
		reportLater(e, other, key, fmt.Sprintf("address %s is already used by", a))
		return
	}
	addrOwner[a] = e
}

// reportLater reports that two elements share a value, at the one written
// later in the file: sites are read before identities, but the later line
// is the one that was just added.
func reportLater(e, other *elem, key, what string) {
	if first, later := other.at(key), e.at(key); later.line < first.line || later.line == first.line && later.col < first.col {
		e, other = other, e
	}
	e.errorf(key, "%s %s", what, other.label)
}

func (b *builder) checkKeyOwner(e *elem, k wgkey.Public, keyOwner map[wgkey.Public]*elem) {
	if k.IsZero() {
		return
	}
	if other, ok := keyOwner[k]; ok {
		reportLater(e, other, "key", fmt.Sprintf("key %s is already used by", k))
		return
	}
	keyOwner[k] = e
}

// checkEndpointPrefix refuses endpoints no flow could sensibly go to: wider
// than /16 (IPv4) or /48 (IPv6); holding the unspecified, a multicast or
// the IPv4 broadcast address; inside the overlay or service prefix (those
// are wardgate's own addresses). Loopback is allowed: a backend on the
// gateway host itself (and tests).
func checkEndpointPrefix(pfx netip.Prefix, o Overlay) error {
	a := pfx.Addr()
	switch {
	case a.Is4() && pfx.Bits() < minEndpointBits4, a.Is6() && pfx.Bits() < minEndpointBits6:
		return fmt.Errorf("endpoint prefix %s is wider than /%d (IPv4) or /%d (IPv6); list the backends", pfx, minEndpointBits4, minEndpointBits6)
	case a.IsUnspecified():
		return fmt.Errorf("endpoint %s is the unspecified address", pfx)
	case a.IsMulticast():
		return fmt.Errorf("endpoint %s is a multicast address", pfx)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("endpoint %s is the broadcast address", pfx)
	case o.Prefix.IsValid() && pfx.Overlaps(o.Prefix):
		return fmt.Errorf("endpoint %s overlaps the overlay prefix %s", pfx, o.Prefix)
	case o.ServicePrefix.IsValid() && pfx.Overlaps(o.ServicePrefix):
		return fmt.Errorf("endpoint %s overlaps the service prefix %s (VIPs)", pfx, o.ServicePrefix)
	}
	return nil
}

// checkLANSources reports LAN sources that overlap another LAN source at
// the same site (a device would be two identities) or any service endpoint
// (an address would be both a client and a backend). Loopback endpoints are
// each gateway's own host, so they clash with nothing elsewhere.
func (b *builder) checkLANSources(p *Policy) {
	var pfxs []netip.Prefix
	var ids []*Identity
	var svcs []*Service
	for _, id := range p.identities {
		if id.IsLAN() {
			pfxs = append(pfxs, id.Source)
			ids, svcs = append(ids, id), append(svcs, nil)
		}
	}
	for _, svc := range p.services {
		for _, ep := range svc.Endpoints {
			if !ep.Prefix.Addr().IsLoopback() {
				pfxs = append(pfxs, ep.Prefix)
				ids, svcs = append(ids, nil), append(svcs, svc)
			}
		}
	}
	reported := map[[2]*Identity]bool{}
	for _, pr := range overlaps(pfxs) {
		i, j := pr[0], pr[1]
		switch {
		case ids[i] != nil && ids[j] != nil:
			// Report on the later identity in the file.
			first, later := ids[i], ids[j]
			if first.ID > later.ID {
				first, later = later, first
			}
			if first.Site == later.Site && !reported[[2]*Identity{first, later}] {
				reported[[2]*Identity{first, later}] = true
				b.idElems[later.ID].errorf("source", "source %s at site %q overlaps identity %q's source %s", later.Source, later.Site, first.Name, first.Source)
			}
		case ids[i] != nil || ids[j] != nil:
			id, svc, ep := ids[i], svcs[j], pfxs[j]
			if id == nil {
				id, svc, ep = ids[j], svcs[i], pfxs[i]
			}
			b.idElems[id.ID].errorf("source", "source %s overlaps service %q's endpoint %s: an address is a client or a backend, not both", id.Source, svc.Name, ep)
		}
	}
}

// checkEndpointClashes reports two services that list the same backend
// address with overlapping ports of one protocol: ServiceByDst could not
// tell them apart.
func (b *builder) checkEndpointClashes(p *Policy) {
	type owner struct {
		svc *Service
		ep  Endpoint
	}
	byPrefix := map[netip.Prefix][]owner{}
	for i, svc := range p.services {
		for _, ep := range svc.Endpoints {
			for _, o := range byPrefix[ep.Prefix] {
				if o.svc != svc && o.ep.Ports.Proto == ep.Ports.Proto && o.ep.Ports.Lo <= ep.Ports.Hi && ep.Ports.Lo <= o.ep.Ports.Hi {
					b.svcElems[i].errorf("endpoints", "endpoint %s:%s overlaps service %q's endpoint %s:%s", ep.Prefix, ep.Ports, o.svc.Name, o.ep.Prefix, o.ep.Ports)
				}
			}
			byPrefix[ep.Prefix] = append(byPrefix[ep.Prefix], owner{svc, ep})
		}
	}
	b.checkSiteEndpoints(p)
}

// checkSiteEndpoints reports endpoint prefixes of services at different
// sites that overlap: a destination address must name one site, whose
// gateway peer gets it as AllowedIPs (SiteRoutes). Loopback endpoints are
// the serving gateway's own host, reached through the VIP, never routed
// between sites: several sites may use them.
func (b *builder) checkSiteEndpoints(p *Policy) {
	var pfxs []netip.Prefix
	var owners []*Service
	for _, svc := range p.services {
		for _, ep := range svc.Endpoints {
			if !ep.Prefix.Addr().IsLoopback() {
				pfxs = append(pfxs, ep.Prefix)
				owners = append(owners, svc)
			}
		}
	}
	reported := map[[2]int]bool{}
	for _, pr := range overlaps(pfxs) {
		a, z := owners[pr[0]], owners[pr[1]]
		if a.Site == z.Site || reported[[2]int{a.ID, z.ID}] {
			continue
		}
		reported[[2]int{a.ID, z.ID}] = true
		b.svcElems[z.ID].errorf("endpoints", "endpoint %s overlaps service %q's endpoint %s at another site (%q, here %q): a destination address must name one site", pfxs[pr[1]], a.Name, pfxs[pr[0]], a.Site, z.Site)
	}
}

// overlaps returns every pair (i, j), i < j, of prefixes that overlap, in
// O(n log n + pairs): sorted by address, shorter first, two CIDR prefixes
// either nest or are disjoint, so each prefix overlaps exactly the ones on a
// stack of those still open that contain it.
func overlaps(pfxs []netip.Prefix) [][2]int {
	order := make([]int, len(pfxs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return comparePrefix(pfxs[order[a]], pfxs[order[b]]) < 0 })
	var pairs [][2]int
	var open []int
	for _, i := range order {
		for len(open) > 0 && !pfxs[open[len(open)-1]].Contains(pfxs[i].Addr()) {
			open = open[:len(open)-1]
		}
		for _, j := range open {
			pairs = append(pairs, [2]int{min(i, j), max(i, j)})
		}
		open = append(open, i)
	}
	return pairs
}
