package overlay

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
)

func TestPeerDiff(t *testing.T) {
	ka, kb, kc := wgkey.Public{1}, wgkey.Public{2}, wgkey.Public{3}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	a := Peer{PublicKey: ka, AllowedIPs: pfx("100.80.1.10/32")}
	b := Peer{PublicKey: kb, AllowedIPs: pfx("100.80.1.11/32", "10.0.0.0/8")}
	bReordered := Peer{PublicKey: kb, AllowedIPs: pfx("10.1.2.3/8", "100.80.1.11/32")}
	bChanged := Peer{PublicKey: kb, AllowedIPs: pfx("100.80.1.12/32"), PersistentKeepalive: 25 * time.Second}
	c := Peer{PublicKey: kc, AllowedIPs: pfx("100.80.1.13/32"), Endpoint: netip.MustParseAddrPort("192.0.2.1:51820")}
	set := func(ps ...Peer) map[wgkey.Public]Peer {
		m := map[wgkey.Public]Peer{}
		for _, p := range ps {
			m[p.PublicKey] = p
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		old, want map[wgkey.Public]Peer
		has, not  []string
	}{
		{name: "equal", old: set(a, b), want: set(a, bReordered)},
		{name: "add", old: set(a), want: set(a, c),
			has: []string{"public_key=" + kc.Hex() + "\nreplace_allowed_ips=true\nallowed_ip=100.80.1.13/32\nendpoint=192.0.2.1:51820\n"},
			not: []string{ka.Hex()}},
		{name: "change", old: set(a, b), want: set(a, bChanged),
			has: []string{"public_key=" + kb.Hex() + "\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=100.80.1.12/32\npersistent_keepalive_interval=25\n"},
			not: []string{ka.Hex(), "remove"}},
		{name: "remove", old: set(a, b), want: set(b),
			has: []string{"public_key=" + ka.Hex() + "\nremove=true\n"},
			not: []string{kb.Hex()}},
	} {
		got := peerDiff(tc.old, tc.want, false)
		if len(tc.has) == 0 && got != "" {
			t.Errorf("%s: diff %q, want none", tc.name, got)
		}
		for _, h := range tc.has {
			if !strings.Contains(got, h) {
				t.Errorf("%s: diff %q lacks %q", tc.name, got, h)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: diff %q mentions %q", tc.name, got, n)
			}
		}
	}
}

func TestParsePeerStats(t *testing.T) {
	dump := "private_key=" + wgkey.Private{9}.Hex() + "\nlisten_port=51820\n" +
		"public_key=" + wgkey.Public{1}.Hex() + "\nendpoint=192.0.2.1:4000\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n" +
		"public_key=" + wgkey.Public{2}.Hex() + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
	st, err := parsePeerStats(dump)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("%d peers, want 2", len(st))
	}
	want0 := PeerStats{PublicKey: wgkey.Public{1}, Endpoint: netip.MustParseAddrPort("192.0.2.1:4000"), LastHandshake: time.Unix(1700000000, 5), RxBytes: 20, TxBytes: 10}
	if st[0] != want0 {
		t.Errorf("peer 0: %+v, want %+v", st[0], want0)
	}
	if !st[1].LastHandshake.IsZero() || st[1].Endpoint.IsValid() {
		t.Errorf("peer 1: %+v, want no handshake and no endpoint", st[1])
	}
}
