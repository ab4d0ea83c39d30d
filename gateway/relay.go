package gateway

import (
	"fmt"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// Flows to services at other sites. A client's flow to a service another
// site serves is decided here on its first packet (routeFlow, the overlay's
// Handler.Route) and, when allowed, relayed as packets over the two
// gateways' WireGuard session: this gateway only decrypts and encrypts. The
// serving gateway sees the client's own source address, believes it
// because cryptokey routing put that address in this site's AllowedIPs
// only, decides again with its own policy, and terminates the flow as for
// a local client. A LAN device's flow is terminated at the listener and
// dialed to the serving site from the device's own overlay address
// (dial, pipeline.go), so the serving site identifies the device, not the gateway.

// isRemote reports whether v's service lives at another site. Flows relayed
// here are always served here: a gateway never relays onward.
func (g *Gateway) isRemote(v verdict) bool {
	return v.fromSite == "" && v.svc != nil && v.svc.Site != "" && v.svc.Site != g.cfg.Site
}

// errSiteDown refuses a flow to a site whose gateway does not answer, at
// once, so that clients see a refusal, not a hang.
func errSiteDown(site string) error { return fmt.Errorf("site %s is down", site) }

// routeFlow is the overlay's Handler.Route: it relays the first packet of
// an allowed flow to a service at another site whose gateway is up, and
// leaves everything else to the stack (local services, and refusals,
// which the stack's handlers decide again and log).
func (g *Gateway) routeFlow(r *overlay.Relay) bool {
	if g.closing.Load() {
		return false
	}
	st := g.state.Load()
	proto := policy.ProtoTCP
	if r.Proto == 17 {
		proto = policy.ProtoUDP
	}
	if svc := st.pol.ServiceByDst(r.Dst, proto); svc == nil || svc.Site == "" || svc.Site == st.site.Name {
		return false // the common case, cheaply: not another site's service
	}
	v := g.classifyOverlay(st, r.Src, r.Dst, proto)
	if !v.pass || !g.isRemote(v) || !g.links.up(v.svc.Site) {
		return false
	}
	if g.limits.acquire(v.id.Name, kindRelayed) != limitNone {
		return false
	}
	f := g.newFlow(v)
	f.relay = r
	f.conns.add(r)
	g.flowsWG.Add(1)
	r.Idle = g.cfg.Limits.TCPIdle
	if proto == policy.ProtoUDP {
		r.Idle = g.udpIdle(v.dst.Port())
	}
	r.OnEnd = func(e overlay.RelayEnd) {
		// Off the packet path, and outside the flow's locks (an abort
		// holds them while it ends the relay).
		go g.endRelayed(v, f, e)
	}
	g.logDecision(v, f, "")
	return true
}

// endRelayed writes a relayed flow's end and releases what it held.
func (g *Gateway) endRelayed(v verdict, f *flow, e overlay.RelayEnd) {
	defer g.flowsWG.Done()
	defer g.limits.releaseFlow(v.id.Name, kindRelayed)
	defer g.removeFlow(f)
	reason := e.Reason
	switch {
	case f.revoked.Load():
		reason = "revoked"
	case e.Reason == overlay.RelayAborted:
		reason = "stopped"
	case e.Reason == overlay.RelayReset:
		reason = "reset by an end" // the client, or the serving site
	}
	g.logEnd(f, reason)
}

// unrelayed says why a flow that reached the stack, although its service
// is at another site, is refused there: routeFlow relays every such flow
// it may, so what is left is a site that is down, or a flow it refused for
// a cap, which the stack's handler then decides and limits again (and, in
// the rare case the cap has room by then, carries from the client's own
// address like a LAN device's flow). "" for a flow that is not another
// site's, or is to be served that way.
func (g *Gateway) unrelayed(v verdict) string {
	if v.pass && g.isRemote(v) && !g.links.up(v.svc.Site) {
		return "site-down"
	}
	return ""
}
