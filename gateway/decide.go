package gateway

import (
	"net/netip"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
)

// state is everything a flow decision reads. It is replaced as a whole on
// reload (atomic pointer swap), so one flow is decided against one policy.
type state struct {
	pol  *policy.Policy
	site *policy.Site  // this gateway's site in pol
	cfg  *Config       // the gateway.toml it was loaded with
	key  wgkey.Private // the private key private_key_file held
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

// judge asks the policy about v, whose identity and service are known (or
// nil), and whether it passes. Every verdict ends here: a new flow's, a LAN
// device's, and a live flow's when it is decided again.
func (g *Gateway) judge(st *state, v verdict) verdict {
	v.d = st.pol.Decide(v.id, v.svc, v.dst.Port(), v.proto, g.now())
	v.d = g.quarantined(st, v)
	v.pass = g.passes(v)
	return v
}

// passes says whether a decided flow goes through: allowed, or a would-be
// denial during roll-out (a deny rule with audit = true, or the gateway in
// audit mode). Flows with no identity or no service have nowhere to go, so
// they stay denied even then, and so do quarantined ones (a quarantine is
// an operator's order, not a rule in roll-out) and flows to the console.
func (g *Gateway) passes(v verdict) bool {
	return v.d.Allowed() || (v.id != nil && v.svc != nil && v.d.Reason != policy.ReasonQuarantined && !isConsole(v) && (v.d.Audit || g.auditing.Load()))
}
