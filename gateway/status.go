package gateway

import (
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
)

// Status is what `wardgate status` shows: enough for an engineer to see at a
// glance whether the gateway enforces, which policy it runs, who is
// connected and whether its site links agree on the policy.
type Status struct {
	Site        string       `json:"site"`
	Address     string       `json:"address"` // overlay address (DNS, site links)
	Port        uint16       `json:"port"`    // WireGuard UDP
	Enforce     string       `json:"enforce"` // "enforce" or "audit"
	Enforcing   bool         `json:"enforcing"`
	Policy      string       `json:"policy"` // file
	PolicyHash  string       `json:"policy_hash"`
	LoadedAt    time.Time    `json:"loaded_at"`
	ActiveFlows int          `json:"active_flows"`
	Peers       []PeerStatus `json:"peers"`
	SiteLinks   []LinkStatus `json:"site_links"`
	// PolicySource is the git repository the policy follows, if any.
	PolicySource *SourceStatus `json:"policy_source,omitempty"`
	// Services are the policy's services with their VIPs, sites and ports.
	Services []ServiceInfo `json:"services"`
	// AuditWriteErrors counts audit lines that could not be written
	// (full disk, ...): each one is an event lost. docs/operating.md.
	AuditWriteErrors uint64 `json:"audit_write_errors"`
	// Quarantined are the identities in quarantine (quarantine.go).
	Quarantined []QuarantineEntry `json:"quarantined"`
}

// PeerStatus is one WireGuard peer: an identity homed here or another
// site's gateway.
type PeerStatus struct {
	Name          string    `json:"name"` // identity or site name
	Kind          string    `json:"kind"` // "identity" or "site"
	Key           string    `json:"key"`
	Address       string    `json:"address"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
}

// LinkStatus is the link to another site's gateway.
type LinkStatus struct {
	Site       string `json:"site"`
	Address    string `json:"address"`
	Healthy    bool   `json:"healthy"`
	PolicyHash string `json:"policy_hash,omitempty"` // as the other gateway last reported it
	// PolicyCommit is the policy source commit the other gateway runs, as
	// it last reported it.
	PolicyCommit string    `json:"policy_commit,omitempty"`
	SameHash     bool      `json:"same_policy"`
	LastError    string    `json:"last_error,omitempty"`
	CheckedAt    time.Time `json:"checked_at,omitzero"`
}

// Status reports the gateway's state now.
func (g *Gateway) Status() Status {
	st := g.state.Load()
	s := Status{
		Site:        st.site.Name,
		Address:     st.site.Address.String(),
		Port:        g.Port(),
		Enforce:     "enforce",
		Enforcing:   !g.auditing.Load(),
		Policy:      st.pol.File(),
		PolicyHash:  st.pol.Hash(),
		LoadedAt:    st.loadedAt,
		ActiveFlows: g.flows.len(),
		Peers:       g.peerStatus(st),
		SiteLinks:   g.linkStatus(st),
		Services:    Services(st.pol),

		PolicySource: g.sourceStatus(),

		AuditWriteErrors: g.auditWriteErrors(),
		Quarantined:      g.Quarantines(),
	}
	if !s.Enforcing {
		s.Enforce = "audit"
	}
	return s
}

// peerStatus joins the device's peer statistics with the policy's names.
func (g *Gateway) peerStatus(st *state) []PeerStatus {
	byKey := make(map[wgkey.Public]overlay.PeerStats)
	for _, ps := range g.overlay.Peers() {
		byKey[ps.PublicKey] = ps
	}
	var out []PeerStatus
	add := func(name, kind string, key wgkey.Public, addr string) {
		p := PeerStatus{Name: name, Kind: kind, Key: key.String(), Address: addr}
		if ps, ok := byKey[key]; ok {
			if ps.Endpoint.IsValid() {
				p.Endpoint = ps.Endpoint.String()
			}
			p.LastHandshake, p.RxBytes, p.TxBytes = ps.LastHandshake, ps.RxBytes, ps.TxBytes
		}
		out = append(out, p)
	}
	for _, id := range st.pol.Identities() {
		if !id.IsLAN() && id.Site == st.site.Name {
			add(id.Name, "identity", id.Key, id.Address.String())
		}
	}
	for _, s := range st.pol.Sites() {
		if s.Name != st.site.Name {
			add(s.Name, "site", s.Key, s.Address.String())
		}
	}
	return out
}
