package gateway

import (
	"net/netip"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// state is everything a flow decision reads. It is replaced as a whole on
// reload (atomic pointer swap), so one flow is decided against one policy.
type state struct {
	pol  *policy.Policy
	site *policy.Site // this gateway's site in pol
	cfg  *Config      // the gateway.toml it was loaded with
	key  policy.Key   // the private key private_key_file held
	// loadedAt is when the policy was loaded (status).
	loadedAt time.Time
	// commit is the policy source's commit pol was read from; "" for a
	// local policy file.
	commit string
}

// verdict is the outcome of classifying and deciding one new flow.
type verdict struct {
	id       *policy.Identity
	svc      *policy.Service
	src, dst netip.AddrPort
	proto    policy.Proto
	d        policy.Decision
	// pass is whether the flow goes through: allowed, or a would-be denial
	// let through in audit mode (event flow.audit).
	pass bool
	// fromSite is the home site of an identity whose flow another site
	// relayed here.
	fromSite string
	// lanSrc is a LAN device's own address for a flow through a listener;
	// src is then its overlay address.
	lanSrc netip.AddrPort
	// took is how long the decision took (metrics); zero when not timed.
	took time.Duration
}

// decide identifies the source, matches the destination to a service and
// asks the policy. It never allocates on the deny path beyond the verdict.
func (g *Gateway) decide(st *state, src, dst netip.AddrPort, proto policy.Proto) verdict {
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
	v = g.decideFor(st, v)
	v.took = time.Since(start)
	return v
}

// decideFor completes v whose identity is already known (or nil).
func (g *Gateway) decideFor(st *state, v verdict) verdict {
	if v.id != nil {
		v.svc = st.pol.ServiceByDst(v.dst, v.proto)
		if v.svc == nil && g.egress != nil {
			v.svc = g.egress(v.id, v.dst.Addr(), v.dst.Port(), v.proto)
		}
	}
	if v.fromSite != "" && v.svc != nil && v.svc.Site != st.site.Name {
		// A relayed flow is served here or nowhere: gateways never relay
		// onward.
		v.svc = nil
	}
	return g.judge(st, v)
}

// judge asks the policy about v, whose identity and service are known (or
// nil), and whether it passes. Every verdict ends here: a new flow's, a LAN
// device's, and a live flow's when it is decided again.
func (g *Gateway) judge(st *state, v verdict) verdict {
	v.d = st.pol.Decide(v.id, v.svc, v.dst.Port(), v.proto, g.now())
	v.pass = g.passes(v)
	return v
}

// passes says whether a decided flow goes through: allowed, or a would-be
// denial during roll-out (a deny rule with audit = true, or the gateway in
// audit mode). Flows with no identity or no service have nowhere to go, so
// they stay denied even then.
func (g *Gateway) passes(v verdict) bool {
	return v.d.Allowed() || (v.id != nil && v.svc != nil && (v.d.Audit || g.auditing.Load()))
}

// removeFlow takes an ended flow out of the table and its bytes into the
// totals.
func (g *Gateway) removeFlow(f *flow) {
	g.flows.remove(f)
	g.metrics.flowEnded(f)
}

// newFlow registers an allowed flow in the flow table.
func (g *Gateway) newFlow(v verdict) *flow {
	f := &flow{fields: v.fields(), start: time.Now()}
	g.flows.add(f, g.cfg.Site)
	return f
}
