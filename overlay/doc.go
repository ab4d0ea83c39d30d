// Package overlay terminates WireGuard peers into a userspace gVisor network
// stack that it owns: a wireguard-go device whose tun.Device is a gVisor link
// endpoint, promiscuous TCP and UDP forwarders that hand every new flow to a
// callback with its source and destination, ICMP echo, peer-set updates, and
// dialing/listening inside the overlay.
//
// overlay knows nothing of policy: the callbacks decide.
//
// # Data path
//
//	bind (UDP or memnet) -> wireguard-go device -> link (tun side, Write)
//	    -> relay (relay.go: a relayed flow's packet goes straight back to
//	       the device, for the peer that serves its destination)
//	    -> inbound hook (icmp.go: echo, drop ICMP errors and fragments)
//	    -> GRO -> gVisor stack (promiscuous NIC)
//	    -> listener, live flow endpoint, or forwarder -> Handler
//	Handler's conn -> gVisor TCP (64 KiB GSO segments) -> link (WritePackets)
//	    -> queue -> tun side Read (batch; splits GSO segments) -> device -> bind
//
// Files: link.go (the tun.Device/stack.LinkEndpoint pair), gso.go
// (splitting host-GSO segments), stack.go (stack
// setup and TCP tuning), tcp.go (forwarder, in-flight shares, keepalive),
// udp.go (new-flow decisions, per-flow endpoints), icmp.go (the inbound
// hook: echo, dropped ICMP and fragments), relay.go and packet.go (flows
// relayed between peers as packets: Handler.Route, the 5-tuple table, MSS
// clamping, resets), peers.go
// (peer diffs and statistics), overlay.go (lifecycle, dial and listen);
// memnet/ is the in-memory conn.Bind for tests and the demo. Keys are
// internal/wgkey's.
//
// # What the flows see
//
//   - TCP: a SYN to any address reaches Handler.TCP unless a listener
//     (ListenTCP) owns the address and port. Reject, a panic or returning
//     without Accept resets it; the client sees "connection refused". At most
//     TCPConfig.MaxInFlight SYNs wait for the handler, at most
//     MaxInFlightPerSource from one source address; a SYN over the source's
//     share is reset, one over the total is dropped (the client retries).
//     The reset of a source whose whole share is in flight is built before
//     the forwarder starts anything for the SYN, so one peer's SYN flood
//     costs little more than its packets and a reset each.
//   - UDP: the first datagram of a (src, dst) pair asks Handler.UDP, on the
//     packet path; nil answers ICMP port unreachable. The flow lives while
//     its conn is open; the overlay sets no idle timeout (the handler owns
//     the conn and its deadlines), and closing the conn lets the next
//     datagram start a new flow.
//   - ICMP echo: answered by the overlay itself for its own Address, and for
//     any other address Handler.Ping allows; other echo requests are dropped.
//   - Other inbound ICMP is dropped, echo replies excepted: errors
//     (unreachable, fragmentation needed / packet too big, time exceeded,
//     parameter problem), redirects, NDP and MLD never reach the stack,
//     because gVisor would match a peer's forged error to another peer's
//     connection by the quoted addresses alone. Connections therefore keep
//     the MSS of the tunnel MTU, and a TCP dial to a dead peer times out
//     instead of failing at once.
//   - Inbound IP fragments (IPv4 with "more fragments" or an offset, IPv6
//     with a fragment header) are dropped: gVisor reassembles in one buffer
//     shared by all peers. Peers at the tunnel MTU fragment nothing that
//     needs to arrive: TCP keeps to its MSS, and a UDP datagram over 1392
//     bytes (IPv4; 1372 for IPv6) is lost.
//
// Why the defaults are what they are (batch size, GRO, GSO, buffer maxima,
// congestion control) is measured in docs/DEVELOPERS.md ("overlay
// throughput").
package overlay
