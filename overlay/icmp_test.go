package overlay_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay"
)

func TestPingRules(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		vip := netip.MustParseAddr("100.81.0.10")
		n := newTestNet(t, tr, overlay.Handler{
			TCP:  echoTCP,
			UDP:  refuseUDP,
			Ping: func(src, dst netip.Addr) bool { return dst == vip },
		}, overlay.Config{})
		p := n.clients(1)[0]
		for _, tc := range []struct {
			dst  netip.Addr
			want bool
		}{
			{gatewayAddr, true},
			{vip, true},
			{netip.MustParseAddr("100.81.0.11"), false},
			{netip.MustParseAddr("192.168.5.10"), false},
		} {
			timeout := 5 * time.Second
			if !tc.want {
				timeout = 300 * time.Millisecond
			}
			err := p.Ping(ctxTimeout(t, timeout), tc.dst)
			if got := err == nil; got != tc.want {
				t.Errorf("ping %v: err %v, want answered=%v", tc.dst, err, tc.want)
			}
		}
	})
}

func TestPingNilHandlerOnlySelf(t *testing.T) {
	n := newTestNet(t, memTransport, overlay.Handler{TCP: echoTCP, UDP: refuseUDP}, overlay.Config{})
	p := n.clients(1)[0]
	if err := p.Ping(ctxTimeout(t, 5*time.Second), gatewayAddr); err != nil {
		t.Errorf("ping gateway: %v", err)
	}
	if err := p.Ping(ctxTimeout(t, 300*time.Millisecond), netip.MustParseAddr("100.81.0.10")); err == nil {
		t.Error("ping to a VIP answered with no Ping handler")
	}
}
