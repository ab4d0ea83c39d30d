package policy

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/wardgate/wardgate/internal/dnsname"
)

// lookupTables are the data-plane maps, built once at load.
type lookupTables struct {
	idByAddr   map[netip.Addr]*Identity
	siteByAddr map[netip.Addr]*Site
	lanBySite  map[string][]*Identity // LAN identities, longest source prefix first
	byVIP      map[netip.Addr]*Service
	byEndpoint map[netip.Addr][]svcEndpoint // single-address endpoints
	byCIDR     []svcEndpoint                // CIDR endpoints, longest prefix first
	byName     map[string]*Service          // NAME.DOMAIN and dns names
	egress     []*Service                   // services with egress patterns
	siteRoutes map[string][]netip.Prefix    // see Policy.SiteRoutes
}

type svcEndpoint struct {
	ep  Endpoint
	svc *Service
}

func (p *Policy) buildLookups() {
	l := &p.lookup
	l.idByAddr = make(map[netip.Addr]*Identity, len(p.identities))
	l.siteByAddr = make(map[netip.Addr]*Site, len(p.sites))
	l.lanBySite = map[string][]*Identity{}
	l.byVIP = make(map[netip.Addr]*Service, len(p.services))
	l.byEndpoint = map[netip.Addr][]svcEndpoint{}
	l.byName = make(map[string]*Service, len(p.services))
	for _, s := range p.sites {
		l.siteByAddr[s.Address] = s
	}
	for _, id := range p.identities {
		if id.IsLAN() {
			l.lanBySite[id.Site] = append(l.lanBySite[id.Site], id)
		}
		l.idByAddr[id.Address] = id
	}
	for _, list := range l.lanBySite {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Source.Bits() > list[j].Source.Bits() })
	}
	for _, svc := range p.services {
		if svc.VIP.IsValid() {
			l.byVIP[svc.VIP] = svc
		}
		for _, ep := range svc.Endpoints {
			if ep.Prefix.IsSingleIP() {
				a := ep.Prefix.Addr()
				l.byEndpoint[a] = append(l.byEndpoint[a], svcEndpoint{ep, svc})
			} else {
				l.byCIDR = append(l.byCIDR, svcEndpoint{ep, svc})
			}
		}
		if p.overlay.Domain != "" {
			l.byName[svc.Name+"."+p.overlay.Domain] = svc
		}
		for _, n := range svc.DNS {
			l.byName[n] = svc
		}
		if len(svc.Egress) > 0 {
			l.egress = append(l.egress, svc)
		}
	}
	if p.console != nil && p.overlay.Domain != "" {
		l.byName[ConsoleService+"."+p.overlay.Domain] = p.console
	}
	sort.SliceStable(l.byCIDR, func(i, j int) bool { return l.byCIDR[i].ep.Prefix.Bits() > l.byCIDR[j].ep.Prefix.Bits() })
	l.siteRoutes = p.siteRoutes()
}

func (p *Policy) siteRoutes() map[string][]netip.Prefix {
	routes := make(map[string][]netip.Prefix, len(p.sites))
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	for _, s := range p.sites {
		routes[s.Name] = append(routes[s.Name], host(s.Address))
	}
	for _, id := range p.identities {
		if _, ok := routes[id.Site]; ok {
			routes[id.Site] = append(routes[id.Site], host(id.Address))
		}
	}
	for _, svc := range p.services {
		if _, ok := routes[svc.Site]; !ok {
			continue
		}
		if svc.VIP.IsValid() {
			routes[svc.Site] = append(routes[svc.Site], host(svc.VIP))
		}
		for _, ep := range svc.Endpoints {
			if !ep.Prefix.Addr().IsLoopback() { // the serving host's own
				routes[svc.Site] = append(routes[svc.Site], ep.Prefix)
			}
		}
	}
	for s, list := range routes {
		slices.SortFunc(list, comparePrefix)
		routes[s] = slices.Clip(slices.Compact(list))
	}
	return routes
}

// comparePrefix orders by address, then shorter prefix first.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// IdentityBySource maps a LAN source address at site to the LAN identity
// whose source CIDR holds it (sources at one site never overlap). nil when
// none.
func (p *Policy) IdentityBySource(site string, a netip.Addr) *Identity {
	a = a.Unmap()
	for _, id := range p.lookup.lanBySite[site] {
		if id.Source.Contains(a) {
			return id
		}
	}
	return nil
}

// ServiceByDst matches a flow destination to a service: (a) a VIP (any
// port: Decide then refuses ports the service does not offer), or (b) a
// backend address and port/proto a service lists. nil when none matches.
func (p *Policy) ServiceByDst(dst netip.AddrPort, proto Proto) *Service {
	l := &p.lookup
	a := dst.Addr().Unmap()
	if svc := l.byVIP[a]; svc != nil {
		return svc
	}
	for _, se := range l.byEndpoint[a] {
		if se.ep.Ports.Contains(dst.Port(), proto) {
			return se.svc
		}
	}
	for _, se := range l.byCIDR {
		if se.ep.Prefix.Contains(a) && se.ep.Ports.Contains(dst.Port(), proto) {
			return se.svc
		}
	}
	return nil
}

// ServiceByName resolves a DNS name, NAME.DOMAIN or one of the service's
// dns names, in any case and with or without a trailing dot. nil when none.
func (p *Policy) ServiceByName(fqdn string) *Service {
	return p.lookup.byName[dnsname.Canonical(fqdn)]
}

// EgressServices returns the egress services whose patterns match fqdn, in
// ID order. The result is nil when none matches; it may be shared: do not
// modify. It allocates only when a pattern matches.
func (p *Policy) EgressServices(fqdn string) []*Service {
	name := dnsname.Canonical(fqdn)
	var out []*Service
	for _, svc := range p.lookup.egress {
		for _, pat := range svc.Egress {
			if dnsname.Match(pat, name) {
				out = append(out, svc)
				break
			}
		}
	}
	return out
}
