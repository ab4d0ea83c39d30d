package gateway

import (
	"fmt"
	"strings"

	"github.com/wardgate/wardgate/gateway/console"
	"github.com/wardgate/wardgate/internal/suggest"
	"github.com/wardgate/wardgate/policy"
)

// consoleSource is what the console reads from the gateway.
type consoleSource struct{ g *Gateway }

func (s consoleSource) Policy() *policy.Policy { return s.g.Policy() }
func (s consoleSource) Feed() *console.Feed    { return s.g.console.feed }

// Suggestions proposes rules, as `wardgate suggest` does from an audit
// log, from the denials and would-be denials among the decisions the
// console keeps (its feed): what an operator watching a roll-out in audit
// mode wants next to the live page. Each is decided again with the policy
// in force, so what a reload has since allowed is not proposed.
func (s consoleSource) Suggestions() ([]console.Suggestion, bool) {
	pol := s.g.Policy()
	c := suggest.New(pol, suggest.Options{})
	recent := s.g.console.feed.Recent()
	for _, d := range recent {
		if d.Verdict == "allow" || d.Identity == "" || d.Service == "" {
			continue
		}
		c.Add(suggest.Observation{Time: d.Time, Identity: d.Identity, Service: d.Service, Port: d.Dst.Port(), Proto: protoNamed(d.Proto)})
	}
	res := c.Result()
	if len(res.Proposals) == 0 && len(res.Held) == 0 {
		return nil, true
	}
	var b strings.Builder
	res.WriteTOML(&b)
	return []console.Suggestion{{
		Evidence: fmt.Sprintf("# from the last %d decisions this gateway keeps", len(recent)),
		Rule:     b.String(),
	}}, true
}

// protoNamed is the protocol a decision names ("tcp", "udp", "icmp").
func protoNamed(name string) policy.Proto {
	for _, p := range []policy.Proto{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP} {
		if p.String() == name {
			return p
		}
	}
	return 0
}

func (s consoleSource) Overview() console.Overview {
	st := s.g.Status()
	o := console.Overview{
		Site: st.Site, Address: st.Address, PolicyFile: st.Policy, PolicyHash: st.PolicyHash,
		LoadedAt: st.LoadedAt, Enforcing: st.Enforcing, ActiveFlows: st.ActiveFlows,
	}
	for _, l := range st.SiteLinks {
		o.Links = append(o.Links, console.Link{Site: l.Site, Healthy: l.Healthy, PolicyHash: l.PolicyHash, SameHash: l.SameHash, Commit: l.PolicyCommit, LastError: l.LastError})
	}
	if ps := st.PolicySource; ps != nil {
		o.PolicySource = &console.PolicySource{Repo: ps.Repo, Branch: ps.Branch, Commit: ps.Commit, Subject: ps.Subject, Signer: ps.Signer,
			LastFetch: ps.LastFetch, Behind: ps.Behind, Offline: ps.Offline, Head: ps.Head, Refused: ps.RefusedBy, FetchErr: ps.FetchErr}
	}
	for _, q := range st.Quarantined {
		if q.Active {
			o.Quarantined = append(o.Quarantined, console.Quarantine{Identity: q.Identity, Reason: q.Reason, By: q.By, Site: q.Site, Since: q.Since})
		}
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
