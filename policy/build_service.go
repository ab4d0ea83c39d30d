package policy

import (
	"net/netip"

	"github.com/wardgate/wardgate/internal/dnsname"
)

// buildService reads a [[service]]: either an egress service (FQDN patterns
// and ports, its addresses learned from DNS) or an endpoint service
// (backend addresses, its ports taken from them), then the names it answers
// to in DNS.
func (b *builder) buildService(p *Policy, e *elem, names map[string]string) {
	e.checkKeys(serviceKeys...)
	svc := &Service{Name: e.name(checkServiceName)}
	svc.Site = e.str("site")
	if svc.Site != "" && p.siteByName[svc.Site] == nil {
		e.errorf("site", "unknown site %q", svc.Site)
	}
	egress, endpoints := e.strs("egress"), e.strs("endpoints")
	if len(egress) > 0 {
		buildEgress(svc, e, egress)
	} else {
		buildEndpoints(p, svc, e, endpoints)
	}
	for _, d := range e.strs("dns") {
		d = dnsname.Canonical(d)
		if err := dnsname.CheckName(d); err != nil {
			e.errorf("dns", "%v", err)
			continue
		}
		svc.DNS = append(svc.DNS, d)
	}
	if svc.Name == "" {
		return
	}
	if svc.Name == ConsoleService {
		e.errorf("name", "service name %q is reserved for the gateway's built-in web console; rename this service", svc.Name)
		return
	}
	if _, dup := p.svcByName[svc.Name]; dup {
		e.errorf("name", "duplicate service name %q", svc.Name)
		return
	}
	own := []string{}
	if p.overlay.Domain != "" {
		own = append(own, svc.Name+"."+p.overlay.Domain)
	}
	for _, n := range append(own, svc.DNS...) {
		if other, ok := names[n]; ok && other != svc.Name {
			e.errorf("dns", "DNS name %q is already service %q", n, other)
			continue
		}
		names[n] = svc.Name
	}
	svc.ID = len(p.services)
	p.svcByName[svc.Name] = svc
	p.services = append(p.services, svc)
	b.svcElems = append(b.svcElems, e)
}

// buildEgress reads an egress service's patterns and ports.
func buildEgress(svc *Service, e *elem, egress []string) {
	if e.has("endpoints") {
		e.errorf("endpoints", "an egress service has no endpoints (its addresses are learned from DNS)")
	}
	if e.has("vip") {
		e.errorf("vip", "an egress service has no vip")
	}
	for _, pat := range egress {
		pat = dnsname.Canonical(pat)
		if err := dnsname.CheckPattern(pat); err != nil {
			e.errorf("egress", "%v", err)
			continue
		}
		svc.Egress = append(svc.Egress, pat)
	}
	if !e.has("ports") {
		e.errorf("", "an egress service needs ports, e.g. ports = [\"443/tcp\"]")
	}
	var rs []PortRange
	for _, s := range e.strs("ports") {
		r, err := ParsePortRange(s)
		if err != nil {
			e.errorf("ports", "%v", err)
			continue
		}
		if r.Proto == ProtoICMP {
			e.errorf("ports", "service ports are tcp or udp; every service answers icmp")
			continue
		}
		rs = append(rs, r)
	}
	svc.Ports = mergeRanges(rs)
}

// buildEndpoints reads an endpoint service's backends and its VIP; its
// ports are the union of its endpoints' ports.
func buildEndpoints(p *Policy, svc *Service, e *elem, endpoints []string) {
	if e.has("egress") {
		e.errorf("egress", "egress is empty")
	}
	if e.has("ports") {
		e.errorf("ports", "ports is only for egress services; a service's ports come from its endpoints")
	}
	if a, ok := e.m["endpoints"].([]any); ok && len(a) == 0 {
		e.errorf("endpoints", "endpoints is empty")
	}
	if !e.has("endpoints") && !e.has("egress") {
		e.errorf("", "needs endpoints (backend addresses) or egress (FQDN patterns)")
	}
	if svc.Site == "" && e.has("endpoints") && !e.has("site") {
		e.errorf("", "missing site (where its endpoints are)")
	}
	var rs []PortRange
	for _, s := range endpoints {
		ep, err := parseEndpoint(s)
		if err == nil {
			err = checkEndpointPrefix(ep.Prefix, p.overlay)
		}
		if err != nil {
			e.errorf("endpoints", "%v", err)
			continue
		}
		svc.Endpoints = append(svc.Endpoints, ep)
		rs = append(rs, ep.Ports)
	}
	svc.Ports = mergeRanges(rs)
	if !e.has("vip") {
		return
	}
	svc.VIP = e.addr("vip")
	sp := p.overlay.ServicePrefix
	if svc.VIP.IsValid() && sp.IsValid() {
		switch {
		case !sp.Contains(svc.VIP):
			e.errorf("vip", "vip %s is outside service_prefix %s", svc.VIP, sp)
			svc.VIP = netip.Addr{}
		case !usableVIP(sp, svc.VIP):
			e.errorf("vip", "vip %s is the network or broadcast address of %s", svc.VIP, sp)
			svc.VIP = netip.Addr{}
		}
	}
}

// Endpoint prefixes at most this wide: a service is some hosts, not a
// network's worth of the address space (and its prefixes are routed to its
// site as AllowedIPs).
const (
	minEndpointBits4 = 16
	minEndpointBits6 = 48
)
