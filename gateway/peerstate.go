package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
)

// A restart must not be a blackout. WireGuard clients do not notice that
// their gateway restarted until a rekey or a retry: 5 to 15 s of lost
// traffic, for every client at every upgrade. So the gateway keeps each
// client's last endpoint in its state directory (peers.json, written
// atomically when endpoints change, at most every peerStateEvery, and at
// stop), and at start gives the device those endpoints and knocks: the
// gateway initiates the handshakes, and clients are back within a round
// trip.

const (
	peerStateFile  = "peers.json"
	peerStateEvery = 30 * time.Second
)

// peerState is peers.json: endpoints by public key (base64).
type peerState struct {
	Endpoints map[string]string `json:"endpoints"`
}

// stateDir is where the gateway keeps its state.
func (c *Config) stateDir() string {
	switch {
	case c.StateDir != "":
		return c.Path(c.StateDir)
	case os.Getenv("STATE_DIRECTORY") != "":
		return filepath.SplitList(os.Getenv("STATE_DIRECTORY"))[0]
	}
	return c.Path("state")
}

// loadPeerEndpoints reads the endpoints saved by the last run; none when
// there is no file yet. A damaged file is reported and ignored: it only
// costs the fast reconnect.
func (g *Gateway) loadPeerEndpoints() map[wgkey.Public]netip.AddrPort {
	path := filepath.Join(g.cfg.stateDir(), peerStateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var ps peerState
	if err == nil {
		err = json.Unmarshal(data, &ps)
	}
	if err != nil {
		g.log.Warn("peer endpoints of the last run not read; clients reconnect on their own", "file", path, "err", err)
		return nil
	}
	out := make(map[wgkey.Public]netip.AddrPort, len(ps.Endpoints))
	for k, ep := range ps.Endpoints {
		key, kerr := wgkey.ParsePublic(k)
		ap, aerr := netip.ParseAddrPort(ep)
		if kerr == nil && aerr == nil {
			out[key] = ap
		}
	}
	return out
}

// savePeerEndpoints writes the clients' current endpoints, atomically.
func (g *Gateway) savePeerEndpoints(stats []overlay.PeerStats) error {
	ps := peerState{Endpoints: make(map[string]string)}
	for _, s := range stats {
		if s.Endpoint.IsValid() {
			ps.Endpoints[s.PublicKey.String()] = s.Endpoint.String()
		}
	}
	data, err := json.MarshalIndent(ps, "", "  ")
	if err != nil {
		return err
	}
	return writeStateFile(g.cfg.stateDir(), peerStateFile, data)
}

// restoreEndpoints gives the peers of this site that have no configured
// endpoint the one they had in the last run.
func restoreEndpoints(peers []overlay.Peer, saved map[wgkey.Public]netip.AddrPort) (restored []wgkey.Public) {
	for i := range peers {
		p := &peers[i]
		if ep, ok := saved[p.PublicKey]; ok && !p.Endpoint.IsValid() {
			p.Endpoint = ep
			restored = append(restored, p.PublicKey)
		}
	}
	return restored
}

// writeStateFile replaces dir/name with data atomically (a temporary file in
// the same directory, synced, then renamed over the old one): a crash
// leaves the old file or the new one, never a part.
func writeStateFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
