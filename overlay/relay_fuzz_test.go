package overlay

import (
	"net/netip"
	"testing"
)

// FuzzRelayPackets runs packet sequences through a relay table whose Route
// relays every new flow: parsing, MSS clamping, sequence tracking, ICMP
// errors about relayed flows and the ends of flows must never panic, and
// what the relay passes on must be a well-formed packet of a relayed flow.
func FuzzRelayPackets(f *testing.F) {
	c, s := netip.MustParseAddrPort("100.80.1.10:40000"), netip.MustParseAddrPort("100.81.0.10:443")
	syn := synPacket(c, s, 1460)
	f.Add(syn, buildRST(s, c, 1))
	f.Add(synPacket(netip.MustParseAddrPort("[fd00::10]:1"), netip.MustParseAddrPort("[fd01::1]:2"), 9000), []byte{0x45})
	f.Add(syn, append([]byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 100, 81, 0, 10, 100, 80, 1, 10, 3, 3, 0, 0, 0, 0, 0, 0}, syn[:28]...))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var passed [][]byte
		rt := newRelayTable(func(r *Relay) bool {
			r.OnEnd = func(RelayEnd) {}
			return true
		}, func([]byte) {}, 1420)
		defer rt.close()
		for _, p := range [][]byte{a, b, a, b} {
			in := append([]byte(nil), p...)
			if fwd, ok := rt.handle(in); ok {
				passed = append(passed, append([]byte(nil), fwd...))
			}
		}
		for _, p := range passed {
			q, ok := parsePacket(p)
			if !ok {
				t.Fatalf("passed on a packet that does not parse: %x", p)
			}
			if q.proto != protoTCP && q.proto != protoUDP && !q.isICMPError() {
				t.Fatalf("passed on protocol %d", q.proto)
			}
		}
	})
}
