package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
)

// The audit log records peer.handshake when a peer starts a WireGuard
// session: its first handshake, one after a silence longer than a session
// lives, or one from a new endpoint. WireGuard's routine rekeys every two
// minutes within a session are not logged; they say nothing new.

const (
	handshakePoll = 2 * time.Second
	// sessionGap is longer than WireGuard's rekey interval (120 s) plus its
	// jitter: a handshake after a longer silence starts a new session.
	sessionGap = 3 * time.Minute
)

// watchHandshakes polls the device's peers until stop is closed: it logs
// new sessions and saves changed endpoints (peerstate.go).
func (g *Gateway) watchHandshakes(stop <-chan struct{}) {
	last := make(map[wgkey.Public]overlay.PeerStats)
	t := time.NewTicker(handshakePoll)
	defer t.Stop()
	var saved time.Time
	moved := false // an endpoint changed since the last save
	for {
		stats := g.overlay.Peers()
		if moved && time.Since(saved) >= peerStateEvery {
			if err := g.savePeerEndpoints(stats); err != nil {
				g.log.Warn("peer endpoints not saved", "err", err)
			}
			saved, moved = time.Now(), false
		}
		for _, ps := range stats {
			prev, seen := last[ps.PublicKey]
			last[ps.PublicKey] = ps
			if ps.Endpoint != prev.Endpoint {
				moved = true
			}
			if ps.LastHandshake.IsZero() || ps.LastHandshake.Equal(prev.LastHandshake) {
				continue
			}
			if seen && !prev.LastHandshake.IsZero() && ps.LastHandshake.Sub(prev.LastHandshake) < sessionGap && ps.Endpoint == prev.Endpoint {
				continue // a rekey within the session
			}
			g.logHandshake(ps)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// logHandshake writes peer.handshake: the identity and its site, or the
// site gateway, that the key belongs to.
func (g *Gateway) logHandshake(ps overlay.PeerStats) {
	st := g.state.Load()
	key := ps.PublicKey
	attrs := []slog.Attr{slog.String("key", key.String())}
	for _, id := range st.pol.Identities() {
		if id.Key == key && !id.IsLAN() {
			attrs = append(attrs, slog.String("identity", id.Name), slog.String("site", id.Site))
			break
		}
	}
	for _, s := range st.pol.Sites() {
		if s.Key == key {
			attrs = append(attrs, slog.String("site", s.Name))
			break
		}
	}
	if ps.Endpoint.IsValid() {
		attrs = append(attrs, slog.String("endpoint", ps.Endpoint.String()))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventPeerHandshake, attrs...)
}
