package gateway

import (
	"context"
	"log/slog"
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
	// loadedAt is when the policy was loaded (status).
	loadedAt time.Time
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
	// flowID and fromSite are set for flows another site relayed here.
	flowID, fromSite string
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
		// Cryptokey routing only admits identities homed here; anything
		// else is a policy/peer mismatch and is treated as unknown.
		v.id = nil
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

// logDecision writes flow.allow, flow.audit or flow.deny for v; f is the
// flow when one was set up. reason overrides the decision's reason (caps
// refuse allowed flows).
func (g *Gateway) logDecision(v verdict, f *flow, reason string) {
	event := EventFlowAllow
	switch {
	case reason != "":
		event = EventFlowDeny
	case !v.d.Allowed() && v.pass:
		event = EventFlowAudit
	case !v.pass:
		event = EventFlowDeny
	}
	if reason == "" {
		reason = v.d.Reason.String()
	}
	attrs := make([]slog.Attr, 0, 12)
	if f != nil {
		attrs = append(attrs, slog.String("flow", f.id))
	} else if v.flowID != "" {
		attrs = append(attrs, slog.String("flow", v.flowID))
	}
	if v.id != nil {
		attrs = append(attrs, slog.String("identity", v.id.Name), slog.String("site", v.id.Site))
	}
	if v.fromSite != "" {
		attrs = append(attrs, slog.String("from_site", v.fromSite))
	}
	attrs = append(attrs, slog.String("src", v.src.String()), slog.String("dst", v.dst.String()))
	if v.svc != nil {
		attrs = append(attrs, slog.String("service", v.svc.Name))
	}
	attrs = append(attrs, slog.String("proto", v.proto.String()), slog.Int("port", int(v.dst.Port())))
	if v.d.Rule != "" {
		attrs = append(attrs, slog.String("rule", v.d.Rule))
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, event, attrs...)
	g.metrics.observe(v, event, v.took)
}

// logEnd writes flow.end for f.
func (g *Gateway) logEnd(f *flow, errText string) {
	attrs := []slog.Attr{
		slog.String("flow", f.id),
		slog.String("identity", f.identity), slog.String("site", f.site),
		slog.String("src", f.src.String()), slog.String("dst", f.dst.String()),
		slog.String("service", f.service), slog.String("proto", f.proto.String()),
		slog.Int("port", int(f.port)), slog.String("rule", f.rule),
		slog.Int64("bytes_in", f.bytesIn.Load()), slog.Int64("bytes_out", f.bytesOut.Load()),
		slog.Int64("duration_ms", time.Since(f.start).Milliseconds()),
	}
	if f.fromSite != "" {
		attrs = append(attrs, slog.String("from_site", f.fromSite))
	}
	if errText != "" {
		attrs = append(attrs, slog.String("error", errText))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventFlowEnd, attrs...)
}

// removeFlow takes an ended flow out of the table and its bytes into the
// totals.
func (g *Gateway) removeFlow(f *flow) {
	g.flows.remove(f)
	g.metrics.flowEnded(f)
}

// newFlow registers an allowed flow in the flow table.
func (g *Gateway) newFlow(v verdict) *flow {
	f := &flow{
		id: v.flowID, identity: v.id.Name, site: v.id.Site, fromSite: v.fromSite, service: v.svc.Name,
		src: v.src, dst: v.dst, proto: v.proto, port: v.dst.Port(),
		rule: v.d.Rule, start: time.Now(),
	}
	g.flows.add(f, g.cfg.Site)
	return f
}
