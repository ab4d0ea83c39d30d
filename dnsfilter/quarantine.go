package dnsfilter

import (
	"context"

	"github.com/miekg/dns"
)

// quarantineStage runs first. A query of an identity in quarantine
// (Config.Quarantined) goes on only for the name of a service that stays
// reachable in quarantine (the policy's [quarantine] allow), where the
// services stage answers it as for anyone (so the rules must let the
// identity reach it too); every other name is REFUSED: no other service,
// nothing forwarded upstream, no egress address learnt. Other identities
// pass untouched.
type quarantineStage struct {
	quarantined func(q *query) bool
}

func (s quarantineStage) answer(_ context.Context, q *query) *dns.Msg {
	if !s.quarantined(q) {
		return nil
	}
	if svc := q.view.ServiceByName(q.name); svc != nil && q.view.QuarantineAllows(svc) {
		return nil
	}
	return rcode(q.req, dns.RcodeRefused)
}
