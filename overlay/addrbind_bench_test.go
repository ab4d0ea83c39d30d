package overlay_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"golang.zx2c4.com/wireguard/conn"
)

// BenchmarkAddrBindSiteLink: one TCP flow between two overlays over real
// UDP on loopback, each on wireguard-go's bind (every address: "wildcard")
// or on an AddrBind on 127.0.0.1 ("addrbind"), to compare the two binds
// in-process. Figures: docs/DEVELOPERS.md.
func BenchmarkAddrBindSiteLink(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, v := range []struct {
		name string
		bind func() conn.Bind
	}{
		{"wildcard", func() conn.Bind { return nil }},
		{"addrbind", func() conn.Bind { return overlay.NewAddrBind(lo) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			ka, kb := mustKey(b), mustKey(b)
			h := overlay.Handler{TCP: discardTCP, UDP: refuseUDP}
			start := func(k wgkey.Private, addr string) *overlay.Overlay {
				o, err := overlay.New(overlay.Config{PrivateKey: k, Address: netip.MustParseAddr(addr), Handler: h, Bind: v.bind()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { o.Close() })
				return o
			}
			a, bb := start(ka, "100.80.0.1"), start(kb, "100.80.0.2")
			if err := a.SetPeers([]overlay.Peer{{
				PublicKey:  kb.Public(),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.2/32"), netip.MustParsePrefix("100.81.1.0/24")},
				Endpoint:   netip.AddrPortFrom(lo, bb.Port()),
			}}); err != nil {
				b.Fatal(err)
			}
			if err := bb.SetPeers([]overlay.Peer{{
				PublicKey:  ka.Public(),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.1/32")},
				Endpoint:   netip.AddrPortFrom(lo, a.Port()),
			}}); err != nil {
				b.Fatal(err)
			}
			c, err := a.DialTCP(context.Background(), netip.MustParseAddrPort("100.81.1.10:9"))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			pump(b, c)
		})
	}
}
