package overlay

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
)

// setPeersLocked makes the device's peers exactly peers, sending it only
// the changes (see peerDiff). o.peersMu must be held.
func (o *Overlay) setPeersLocked(peers []Peer) error {
	want := make(map[wgkey.Public]Peer, len(peers))
	for _, p := range peers {
		if _, dup := want[p.PublicKey]; dup {
			return fmt.Errorf("overlay: peer %s listed twice", p.PublicKey)
		}
		want[p.PublicKey] = p
	}
	old := o.peers
	if o.peersUnknown {
		// A previous update failed part-way: start from nothing.
		old = nil
	}
	uapi := peerDiff(old, want, o.peersUnknown)
	if uapi == "" {
		return nil
	}
	if err := o.dev.IpcSet(uapi); err != nil {
		// The device may have applied part of it: the next call replaces
		// all peers (at the cost of their sessions) rather than diffing
		// against a set that is no longer true.
		o.peersUnknown = true
		return fmt.Errorf("overlay: set peers: %w", err)
	}
	o.peers, o.peersUnknown = want, false
	return nil
}

// peerDiff returns the UAPI "set" text that turns the peer set old into
// want; empty when they are equal. Peers are identified by key. A peer whose
// settings are equal is not mentioned at all, so its session and counters
// carry on; a changed one is updated in place (update_only,
// replace_allowed_ips), which keeps its session too; a missing one is
// removed. With replaceAll, all peers are replaced by want.
func peerDiff(old, want map[wgkey.Public]Peer, replaceAll bool) string {
	var b strings.Builder
	if replaceAll {
		b.WriteString("replace_peers=true\n")
	}
	for _, k := range sortedKeys(old) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", k.Hex())
		}
	}
	for _, k := range sortedKeys(want) {
		p := want[k]
		o, ok := old[k]
		switch {
		case !ok:
			writePeer(&b, p, false)
		case !samePeer(o, p):
			writePeer(&b, p, true)
		}
	}
	return b.String()
}

func sortedKeys(m map[wgkey.Public]Peer) []wgkey.Public {
	ks := make([]wgkey.Public, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b wgkey.Public) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ks
}

// writePeer writes one peer's UAPI section. An update replaces the allowed
// IPs; an endpoint that became zero is left as the device learnt it.
func writePeer(b *strings.Builder, p Peer, update bool) {
	fmt.Fprintf(b, "public_key=%s\n", p.PublicKey.Hex())
	if update {
		b.WriteString("update_only=true\n")
	}
	b.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(b, "allowed_ip=%s\n", a.Masked())
	}
	if p.Endpoint.IsValid() {
		fmt.Fprintf(b, "endpoint=%s\n", p.Endpoint)
	}
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepalive/time.Second))
}

func samePeer(a, b Peer) bool {
	if a.Endpoint != b.Endpoint || a.PersistentKeepalive/time.Second != b.PersistentKeepalive/time.Second {
		return false
	}
	norm := func(ps []netip.Prefix) []netip.Prefix {
		out := make([]netip.Prefix, len(ps))
		for i, p := range ps {
			out[i] = p.Masked()
		}
		slices.SortFunc(out, func(x, y netip.Prefix) int {
			if c := x.Addr().Compare(y.Addr()); c != 0 {
				return c
			}
			return x.Bits() - y.Bits()
		})
		return slices.Compact(out)
	}
	return slices.Equal(norm(a.AllowedIPs), norm(b.AllowedIPs))
}

// parsePeerStats reads the peers out of a UAPI "get" dump.
func parsePeerStats(dump string) ([]PeerStats, error) {
	var (
		out       []PeerStats
		cur       *PeerStats
		sec, nsec int64
	)
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			out = append(out, *cur)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			cur, sec, nsec = &PeerStats{}, 0, 0
			raw, err := hex.DecodeString(v)
			if err != nil || len(raw) != len(cur.PublicKey) {
				return nil, fmt.Errorf("overlay: bad public_key %q in device state", v)
			}
			copy(cur.PublicKey[:], raw)
		case "endpoint":
			if cur != nil {
				cur.Endpoint, _ = netip.ParseAddrPort(v)
			}
		case "last_handshake_time_sec":
			if cur != nil {
				sec, _ = strconv.ParseInt(v, 10, 64)
			}
		case "last_handshake_time_nsec":
			if cur != nil {
				nsec, _ = strconv.ParseInt(v, 10, 64)
			}
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	flush()
	return out, sc.Err()
}
