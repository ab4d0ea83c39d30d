package gateway

import (
	"io"
	"log/slog"
	"time"
)

// NewAuditLogger returns the audit log: one JSON object per line, every
// decision, nothing sampled. Callers log the event name as the message
// ("flow.allow", "dns.query", ...) and docs/design.md's field names as attributes;
// the handler renames msg to "event", drops the level and writes time as
// RFC3339Nano. Packages that emit audit events (dnsfilter) take a plain
// *slog.Logger, so the audit log is one mechanism, not one per package.
func NewAuditLogger(w io.Writer) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.Attr{}
			case slog.MessageKey:
				a.Key = "event"
			case slog.TimeKey:
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.UTC().Format(time.RFC3339Nano))
				}
			}
			return a
		},
	})
	return slog.New(h)
}

// Audit event names (docs/design.md, "The audit log").
const (
	EventFlowAllow     = "flow.allow"
	EventFlowDeny      = "flow.deny"
	EventFlowAudit     = "flow.audit"
	EventFlowEnd       = "flow.end"
	EventFlowRevoked   = "flow.revoked"
	EventConfigReload  = "config.reload"
	EventConfigError   = "config.error"
	EventConfigEnforce = "config.enforce" // the enforce mode changed (from, to)
	EventGatewayStart  = "gateway.start"  // version, policy hash, enforce mode
	EventGatewayStop   = "gateway.stop"
	EventPeerHandshake = "peer.handshake"
	// identity.quarantine and identity.release: identity, reason, by,
	// site (where it was issued), from_site when learnt over a site link.
	EventIdentityQuarantine = "identity.quarantine"
	EventIdentityRelease    = "identity.release"
)
