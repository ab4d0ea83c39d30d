package overlay

import (
	"encoding/binary"
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketBuffer is the send and receive buffer AddrBind asks for, as
// wireguard-go's bind does: at link speed the default buffers overflow
// between two reads and drop packets.
const socketBuffer = 7 << 20

// segmentControlSize is the room one UDP_SEGMENT or UDP_GRO control
// message takes.
var segmentControlSize = unix.CmsgSpace(2)

// tuneSocket sizes udp's buffers (beyond the sysctl limits when the
// process may) and turns on UDP GRO, and reports which offloads the kernel
// has: UDP_SEGMENT since Linux 4.18; UDP_GRO since 5.0, but only 5.12 and
// later say whether it is on, so without that answer it is left off.
func tuneSocket(udp *net.UDPConn) (gso, gro bool) {
	rc, err := udp.SyscallConn()
	if err != nil {
		return false, false
	}
	rc.Control(func(fd uintptr) {
		s := int(fd)
		for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF, unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, opt, socketBuffer) // best effort
		}
		_, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		if unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) != nil {
			return
		}
		on, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO)
		gro = err == nil && on == 1
		if !gro {
			_ = unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 0)
		}
	})
	return gso, gro
}

// appendSegmentSize appends a UDP_SEGMENT control message for size to oob.
func appendSegmentSize(oob []byte, size uint16) []byte {
	start := len(oob)
	oob = append(oob, make([]byte, segmentControlSize)...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[start]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[start+unix.CmsgLen(0):], size)
	return oob
}

// segmentSize returns the segment size in oob's UDP_GRO control message,
// or 0 when there is none (the datagram is one packet).
func segmentSize(oob []byte) (int, error) {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, err
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2 {
			return int(binary.NativeEndian.Uint16(data)), nil
		}
		oob = rest
	}
	return 0, nil
}

// gsoRefused reports whether a send failed because the kernel would not
// segment it: EIO from udp_send_skb when the outgoing device has no
// checksum offload, which UDP_SEGMENT needs (udp(7)).
func gsoRefused(err error) bool { return errors.Is(err, unix.EIO) }
