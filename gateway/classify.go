package gateway

import (
	"net/netip"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Classify: who is asking, and for what. One function per kind of
// source; each fills a verdict's identity, service and addresses and
// hands it to judge (decide.go).

// classifyOverlay identifies a flow from the overlay by its source
// address: a client of this site, or a client of another site whose
// gateway relayed its packets here. The destination is a service's VIP or
// endpoint, or an address the identity learnt from DNS (FQDN egress).
func (g *Gateway) classifyOverlay(st *state, src, dst netip.AddrPort, proto policy.Proto) verdict {
	start := time.Now()
	v := verdict{src: src, dst: dst, proto: proto}
	v.id = st.pol.IdentityByAddr(src.Addr())
	if v.id != nil && v.id.Site != st.site.Name {
		// Cryptokey routing put this address only in the AllowedIPs of the
		// identity's home site, so that site relayed the flow and vouches
		// for it (a peer's own packets with another's source are dropped by
		// the device). Decide again, with this gateway's policy.
		v.fromSite = v.id.Site
	}
	if v.id != nil {
		v.svc = st.pol.ServiceByDst(v.dst, v.proto)
		if v.svc == nil {
			v.svc = consoleService(st, v.dst, v.proto)
		}
		if v.svc == nil && g.egress != nil {
			v.svc = g.egress(v.id, v.dst.Addr(), v.dst.Port(), v.proto)
		}
	}
	if v.fromSite != "" && v.svc != nil && v.svc.Site != st.site.Name {
		// A relayed flow is served here or nowhere: gateways never relay
		// onward.
		v.svc = nil
	}
	v = g.judge(st, v)
	v.took = time.Since(start)
	return v
}

// classifyLAN identifies a LAN device at a listener for service by its
// source address (the site's LAN [[identity]] whose source CIDR holds
// it). In the overlay the device is its identity's overlay address, with
// its own source port; lanSrc keeps its LAN address.
func (g *Gateway) classifyLAN(src netip.AddrPort, service string, port uint16, proto policy.Proto) verdict {
	st := g.state.Load()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	v := verdict{src: src, lanSrc: src, proto: proto, id: st.pol.IdentityBySource(st.site.Name, src.Addr())}
	if v.id != nil {
		v.src = netip.AddrPortFrom(v.id.Address, src.Port())
	}
	if svc := st.pol.Service(service); svc != nil && svc.VIP.IsValid() {
		v.svc = svc
		v.dst = netip.AddrPortFrom(svc.VIP, servicePort(svc, port, proto))
	}
	return g.judge(st, v)
}

// servicePort picks the service port a listener forwards to: its own
// port when the service offers it, else the service's first port of the
// protocol.
func servicePort(svc *policy.Service, port uint16, proto policy.Proto) uint16 {
	if svc.Offers(port, proto) {
		return port
	}
	for _, pr := range svc.Ports {
		if pr.Proto == proto {
			return pr.Lo
		}
	}
	return port
}
