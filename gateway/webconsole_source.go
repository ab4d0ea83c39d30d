package gateway

import (
	"github.com/wardgate/wardgate/gateway/console"
	"github.com/wardgate/wardgate/policy"
)

// consoleSource is what the console reads from the gateway.
type consoleSource struct{ g *Gateway }

func (s consoleSource) Policy() *policy.Policy { return s.g.Policy() }
func (s consoleSource) Feed() *console.Feed    { return s.g.console.feed }

// Suggestions: proposing rules from observed flows is not part of the
// gateway yet.
func (s consoleSource) Suggestions() ([]console.Suggestion, bool) { return nil, false }

func (s consoleSource) Overview() console.Overview {
	st := s.g.Status()
	o := console.Overview{
		Site: st.Site, Address: st.Address, PolicyFile: st.Policy, PolicyHash: st.PolicyHash,
		LoadedAt: st.LoadedAt, Enforcing: st.Enforcing, ActiveFlows: st.ActiveFlows,
	}
	for _, l := range st.SiteLinks {
		o.Links = append(o.Links, console.Link{Site: l.Site, Healthy: l.Healthy, PolicyHash: l.PolicyHash, SameHash: l.SameHash, LastError: l.LastError})
	}
	for _, p := range st.Peers {
		o.Peers = append(o.Peers, console.Peer{Name: p.Name, Kind: p.Kind, Address: p.Address, LastHandshake: p.LastHandshake})
	}
	if s.g.dns != nil {
		ds := s.g.dns.Stats()
		o.DNSQueries, o.DNSBlocked, o.DNSRefused = ds.Queries, ds.Blocked, ds.Refused
	}
	return o
}

func (s consoleSource) Flows() []console.Flow {
	fs := s.g.Flows()
	out := make([]console.Flow, len(fs))
	for i, f := range fs {
		out[i] = console.Flow{ID: f.ID, Identity: f.Identity, Site: f.Site, Service: f.Service, Proto: f.Proto,
			Port: f.Port, Rule: f.Rule, Start: f.Start, BytesIn: f.BytesIn, BytesOut: f.BytesOut}
	}
	return out
}
