package overlay

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the stack's only NIC: the WireGuard device.
const nicID tcpip.NICID = 1

// newStack builds the gVisor stack on ep: IPv4 and IPv6, TCP, UDP and ICMP,
// one promiscuous, spoofing NIC that accepts and sends for any address, the
// gateway's own address, and a default route for both families.
func newStack(ep stack.LinkEndpoint, self netip.Addr, tc TCPConfig) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	if err := tuneTCP(s, tc); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.CreateNIC(nicID, ep); err != nil {
		s.Close()
		return nil, fmt.Errorf("overlay: create NIC: %v", err)
	}
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		s.Close()
		return nil, fmt.Errorf("overlay: promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		s.Close()
		return nil, fmt.Errorf("overlay: spoofing: %v", err)
	}
	if self.IsValid() {
		pa := tcpip.ProtocolAddress{
			Protocol:          protoOf(self),
			AddressWithPrefix: tcpip.AddrFromSlice(self.AsSlice()).WithPrefix(),
		}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			s.Close()
			return nil, fmt.Errorf("overlay: add address %v: %v", self, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return s, nil
}

// tcpRecovery is gVisor's loss recovery for new stacks (0: SACK recovery,
// RACK off; see tuneTCP); a variable so that tests can compare.
var tcpRecovery = tcpip.TCPRecovery(0)

// tuneTCP applies the TCP settings. See docs/DEVELOPERS.md ("overlay
// throughput") for the figures behind the defaults.
//
// Loss recovery is SACK-based (RFC 6675), with gVisor's RACK-TLP off: with
// RACK on, four 200 MB downloads in twenty from a loopback backend to a
// wireguard-go client stalled for 10-40 s with the CPU idle (a sender
// waiting out backed-off retransmission timeouts); with it off, none did
// in forty (test/interop TestDownloadStalls), for a median about 15%
// slower. Tailscale ran gVisor with RACK off for years for the same kind
// of trouble. gVisor has changed RACK loss detection since the version
// this module uses (PR 14492, for coarse clocks); whether that cures these
// stalls is to be measured on an upgrade.
func tuneTCP(s *stack.Stack, tc TCPConfig) error {
	sack := tcpip.TCPSACKEnabled(true)
	recovery := tcpRecovery
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tc.ReceiveBufferDefault, Max: tc.ReceiveBufferMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tc.SendBufferDefault, Max: tc.SendBufferMax}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	opts := []tcpip.SettableTransportProtocolOption{&sack, &recovery, &rcv, &snd, &moderate}
	if tc.CongestionControl != "" {
		cc := tcpip.CongestionControlOption(tc.CongestionControl)
		opts = append(opts, &cc)
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("overlay: TCP option %T: %v", o, err)
		}
	}
	return nil
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// addrPortOf converts a gVisor address and port; IPv4-mapped forms are
// unmapped so that callers compare plain addresses.
func addrPortOf(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().Unmap().AsSlice()), Port: ap.Port()}
}
