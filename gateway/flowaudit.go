package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/wardgate/wardgate/internal/communityid"
	"github.com/wardgate/wardgate/policy"
)

// The audit records of a flow: flow.allow, flow.audit or flow.deny when it
// is decided, flow.end when it ends, flow.revoked when a reload or a closing
// time window ends it. Every record of one flow carries the same fields
// (flowFields), community_id among them, so that a SIEM joins a flow's
// records here with those of the other site's gateway and of other tools.

// flowFields are the fields every record of a flow carries.
type flowFields struct {
	id             string // this gateway's flow ID; "" when refused
	identity, site string // who, and where they are homed
	fromSite       string // the site that relayed it here; "" when local
	service, rule  string
	src, dst       netip.AddrPort // as seen in the overlay
	lanSrc         netip.AddrPort // a LAN device's own address, behind a listener
	proto          policy.Proto
	communityID    string
}

// fields are v's audit fields.
func (v verdict) fields() flowFields {
	ff := flowFields{fromSite: v.fromSite, src: v.src, dst: v.dst, lanSrc: v.lanSrc, proto: v.proto, rule: v.d.Rule}
	if v.id != nil {
		ff.identity, ff.site = v.id.Name, v.id.Site
	}
	if v.svc != nil {
		ff.service = v.svc.Name
	}
	ff.communityID = communityID(v.src, v.dst, v.proto)
	return ff
}

// communityID is the Community ID v1 of a flow (seed 0).
func communityID(src, dst netip.AddrPort, proto policy.Proto) string {
	if !src.IsValid() || !dst.IsValid() {
		return ""
	}
	return communityid.ID(src, dst, ipProto(proto))
}

// ipProto is proto's IP protocol number.
func ipProto(p policy.Proto) uint8 {
	switch p {
	case policy.ProtoTCP:
		return 6
	case policy.ProtoUDP:
		return 17
	}
	return 1
}

// attrs renders ff, then extra, as audit attributes.
func (ff *flowFields) attrs(extra ...slog.Attr) []slog.Attr {
	a := make([]slog.Attr, 0, 14+len(extra))
	if ff.id != "" {
		a = append(a, slog.String("flow", ff.id))
	}
	if ff.identity != "" {
		a = append(a, slog.String("identity", ff.identity), slog.String("site", ff.site))
	}
	if ff.fromSite != "" {
		a = append(a, slog.String("from_site", ff.fromSite))
	}
	if ff.src.IsValid() {
		a = append(a, slog.String("src", ff.src.String()))
	}
	a = append(a, slog.String("dst", ff.dst.String()))
	if ff.lanSrc.IsValid() {
		a = append(a, slog.String("lan_src", ff.lanSrc.String()))
	}
	if ff.service != "" {
		a = append(a, slog.String("service", ff.service))
	}
	a = append(a, slog.String("proto", ff.proto.String()), slog.Int("port", int(ff.dst.Port())))
	if ff.rule != "" {
		a = append(a, slog.String("rule", ff.rule))
	}
	if ff.communityID != "" {
		a = append(a, slog.String("community_id", ff.communityID))
	}
	return append(a, extra...)
}

// logDecision writes flow.allow, flow.audit or flow.deny for v; f is the
// flow when one was set up. reason overrides the decision's reason (caps
// and an unreachable site refuse allowed flows).
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
	ff := v.fields()
	if f != nil {
		ff = f.fields
	}
	var extra []slog.Attr
	if reason != "" {
		extra = append(extra, slog.String("reason", reason))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, event, ff.attrs(extra...)...)
	g.metrics.observe(v, event, v.took)
	g.publishDecision(v, event, reason)
}

// logEnd writes flow.end for f.
func (g *Gateway) logEnd(f *flow, errText string) {
	in, out := f.bytes()
	extra := []slog.Attr{
		slog.Int64("bytes_in", in), slog.Int64("bytes_out", out),
		slog.Int64("duration_ms", time.Since(f.start).Milliseconds()),
	}
	if errText != "" {
		extra = append(extra, slog.String("error", errText))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventFlowEnd, f.fields.attrs(extra...)...)
}

// logRevoked writes flow.revoked for f, ended because d no longer lets it
// through.
func (g *Gateway) logRevoked(f *flow, d policy.Decision) {
	ff := f.fields
	ff.rule = d.Rule
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventFlowRevoked, ff.attrs(slog.String("reason", d.Reason.String()))...)
}
