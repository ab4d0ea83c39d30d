package overlay

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestResetFor: the reset built for a SYN over its source's share is a
// valid RST+ACK back to the SYN's sender, for both families.
func TestResetFor(t *testing.T) {
	for _, tc := range []struct{ client, service string }{
		{"100.80.1.10", "100.81.0.10"},
		{"fd00:80::10", "fd00:81::10"},
	} {
		client, service := netip.MustParseAddr(tc.client), netip.MustParseAddr(tc.service)
		id := stack.TransportEndpointID{
			LocalAddress: tcpip.AddrFromSlice(service.AsSlice()), LocalPort: 443,
			RemoteAddress: tcpip.AddrFromSlice(client.AsSlice()), RemotePort: 54321,
		}
		b := resetFor(id, 1000)
		var src, dst tcpip.Address
		var th header.TCP
		if client.Is4() {
			ip := header.IPv4(b)
			if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
				t.Fatalf("%v: bad IPv4 header % x", client, b)
			}
			src, dst, th = ip.SourceAddress(), ip.DestinationAddress(), header.TCP(ip.Payload())
		} else {
			ip := header.IPv6(b)
			if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.TCPProtocolNumber {
				t.Fatalf("%v: bad IPv6 header % x", client, b)
			}
			src, dst, th = ip.SourceAddress(), ip.DestinationAddress(), header.TCP(ip.Payload())
		}
		if src != id.LocalAddress || dst != id.RemoteAddress {
			t.Errorf("%v: reset %v -> %v", client, src, dst)
		}
		if th.SourcePort() != 443 || th.DestinationPort() != 54321 || th.Flags() != header.TCPFlagRst|header.TCPFlagAck || th.AckNumber() != 1001 {
			t.Errorf("%v: reset ports %d->%d flags %v ack %d", client, th.SourcePort(), th.DestinationPort(), th.Flags(), th.AckNumber())
		}
		if !th.IsChecksumValid(src, dst, 0, 0) {
			t.Errorf("%v: bad TCP checksum", client)
		}
	}
}
