//go:build !linux

package overlay

import "net"

// segmentControlSize: no UDP offloads, so no control messages.
const segmentControlSize = 0

// tuneSocket: UDP GSO and GRO are Linux only.
func tuneSocket(*net.UDPConn) (gso, gro bool) { return false, false }

// appendSegmentSize is never called without GSO.
func appendSegmentSize(oob []byte, _ uint16) []byte { return oob }

// segmentSize: without GRO every datagram is one packet.
func segmentSize([]byte) (int, error) { return 0, nil }

// gsoRefused: there is no GSO to refuse.
func gsoRefused(error) bool { return false }
