package overlay

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// TestInboundFilter: what the inbound hook consumes (drops or answers) and
// what it leaves to the stack.
func TestInboundFilter(t *testing.T) {
	const (
		v4 = "45000021000040004001000064500b0a64510014" // ICMP, 33 bytes, DF, 100.80.11.10 -> 100.81.0.20
		v6 = "60000000%04x%02x40fd000080000000000000000000000010fd000081000000000000000000000010"
	)
	v6hdr := func(plen int, next byte) string {
		return strings.Replace(strings.Replace(v6, "%04x", hex.EncodeToString([]byte{byte(plen >> 8), byte(plen)}), 1),
			"%02x", hex.EncodeToString([]byte{next}), 1)
	}
	for _, tc := range []struct {
		name     string
		pkt      string
		consumed bool
		replied  bool
	}{
		{"v4 echo request", v4 + "0800f7ff00010001" + "68656c6c6f", true, true},
		{"v4 echo reply", v4 + "0000f7ff00010001" + "68656c6c6f", false, false},
		{"v4 frag needed", v4 + "0304000000000044" + "686970", true, false},
		{"v4 port unreachable", v4 + "0303000000000000" + "686970", true, false},
		{"v4 time exceeded", v4 + "0b00000000000000" + "686970", true, false},
		{"v4 redirect", v4 + "0501000064500001" + "686970", true, false},
		{"v4 TCP", "4500003c000040004006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000", false, false},
		{"v4 first fragment", "4500003c000020004006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000", true, false},
		{"v4 later fragment", "4500003c000000054006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000", true, false},
		{"v4 fragment of an echo", "45000054000020004001000064500b0a64510014" + "0800f7ff00010001" + "68656c6c6f", true, false},
		{"v6 echo request", v6hdr(8, 58) + "8000000000010001", true, true},
		{"v6 echo request after hop-by-hop", v6hdr(16, 0) + "3a00000000000000" + "8000000000010001", true, true},
		{"v6 echo reply", v6hdr(8, 58) + "8100000000010001", false, false},
		{"v6 packet too big", v6hdr(8, 58) + "0200000000000500", true, false},
		{"v6 unreachable", v6hdr(8, 58) + "0104000000000000", true, false},
		{"v6 neighbour advertisement", v6hdr(8, 58) + "8800000000000000", true, false},
		{"v6 packet too big after dest options", v6hdr(16, 60) + "3a00000000000000" + "0200000000000500", true, false},
		{"v6 fragment header", v6hdr(16, 44) + "1100000100000001" + "d431003500000000", true, false},
		{"v6 UDP after dest options", v6hdr(16, 60) + "1100000000000000" + "d431003500080000", false, false},
		{"v6 truncated hop-by-hop", v6hdr(4, 0) + "3a000000", true, false},
		{"v6 UDP", v6hdr(8, 17) + "d431003500080000", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, err := hex.DecodeString(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			replied := false
			e := &echoResponder{
				self:  netip.MustParseAddr("100.80.0.1"),
				allow: func(src, dst netip.Addr) bool { return true },
				reply: func([]byte) { replied = true },
			}
			if got := e.handle(pkt); got != tc.consumed || replied != tc.replied {
				t.Errorf("consumed %v, replied %v; want %v, %v", got, replied, tc.consumed, tc.replied)
			}
		})
	}
}
