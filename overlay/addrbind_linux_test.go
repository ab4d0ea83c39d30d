package overlay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// sentSegmentSize is the UDP_SEGMENT size in oob, 0 if none.
func sentSegmentSize(t *testing.T, oob []byte) int {
	t.Helper()
	if len(oob) == 0 {
		return 0
	}
	h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
	if err != nil || len(rest) != 0 || h.Level != unix.SOL_UDP || h.Type != unix.UDP_SEGMENT || len(data) < 2 {
		t.Fatalf("control message %x is not one UDP_SEGMENT (%v)", oob, err)
	}
	return int(binary.NativeEndian.Uint16(data))
}

// groControl is the control message the kernel attaches to a datagram it
// merged from segments of size.
func groControl(size uint16) []byte {
	oob := make([]byte, segmentControlSize)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], size)
	return oob
}

// TestCoalesce: which packets coalesce into one datagram, and with which
// segment size.
func TestCoalesce(t *testing.T) {
	type datagram struct{ len, segment int } // segment 0: a lone packet
	sizes := func(n, size int) []int { return slices.Repeat([]int{size}, n) }
	tests := []struct {
		name   string
		sizes  []int
		noRoom bool // packets without spare capacity
		v6     bool
		gso    bool
		want   []datagram
	}{
		{name: "one packet", sizes: []int{100}, gso: true, want: []datagram{{100, 0}}},
		{name: "equal sizes", sizes: sizes(3, 100), gso: true, want: []datagram{{300, 100}}},
		{name: "last shorter", sizes: []int{100, 100, 40}, gso: true, want: []datagram{{240, 100}}},
		{name: "shorter ends the train", sizes: []int{100, 40, 100, 100}, gso: true,
			want: []datagram{{140, 100}, {200, 100}}},
		{name: "longer starts a train", sizes: []int{100, 100, 200, 200}, gso: true,
			want: []datagram{{200, 100}, {400, 200}}},
		{name: "64 segments at most", sizes: sizes(130, 10), gso: true,
			want: []datagram{{640, 10}, {640, 10}, {20, 10}}},
		{name: "IPv4 datagram size", sizes: sizes(60, 1400), gso: true,
			want: []datagram{{46 * 1400, 1400}, {14 * 1400, 1400}}},
		{name: "IPv6 datagram size", sizes: sizes(60, 1400), v6: true, gso: true,
			want: []datagram{{46 * 1400, 1400}, {14 * 1400, 1400}}},
		{name: "IPv6 allows 8 bytes more", sizes: sizes(2, 32763), v6: true, gso: true,
			want: []datagram{{65526, 32763}}},
		{name: "IPv4 does not", sizes: sizes(2, 32763), gso: true,
			want: []datagram{{32763, 0}, {32763, 0}}},
		{name: "no spare capacity", sizes: sizes(3, 100), noRoom: true, gso: true,
			want: []datagram{{100, 0}, {100, 0}, {100, 0}}},
		{name: "GSO off", sizes: sizes(3, 100), want: []datagram{{100, 0}, {100, 0}, {100, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:51820"))
			if tt.v6 {
				dst = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:51820"))
			}
			var bufs [][]byte
			var stream []byte
			for i, size := range tt.sizes {
				c := 1<<16 - 1
				if tt.noRoom {
					c = size
				}
				p := make([]byte, size, c)
				for j := range p {
					p[j] = byte(i)
				}
				bufs = append(bufs, p)
				stream = append(stream, p...)
			}
			msgs := *newMessages(len(bufs))
			n := coalesce(msgs, bufs, dst, tt.gso)
			var got []datagram
			var sent []byte
			for _, m := range msgs[:n] {
				got = append(got, datagram{len(m.Buffers[0]), sentSegmentSize(t, m.OOB)})
				sent = append(sent, m.Buffers[0]...)
				if m.Addr != dst {
					t.Errorf("datagram to %v, want %v", m.Addr, dst)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("datagrams %v, want %v", got, tt.want)
			}
			if string(sent) != string(stream) {
				t.Error("the datagrams do not carry the packets in order")
			}
		})
	}
}

// TestSplitSegments: merged datagrams come out as their packets, in order,
// with their sender; a datagram without a GRO size is one packet; a train
// that would overwrite unread datagrams is an error.
func TestSplitSegments(t *testing.T) {
	from := func(port int) net.Addr {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(port)))
	}
	// read: what recvmmsg left in the last messages (size 0: no GRO).
	type read struct {
		lens    []int // the packets merged into it
		segment uint16
	}
	tests := []struct {
		name    string
		batch   int
		reads   []read
		want    []int // packet lengths
		wantErr bool
	}{
		{name: "equal segments", batch: 8, reads: []read{{[]int{100, 100, 100}, 100}}, want: []int{100, 100, 100}},
		{name: "last shorter", batch: 8, reads: []read{{[]int{100, 100, 7}, 100}}, want: []int{100, 100, 7}},
		{name: "one segment", batch: 8, reads: []read{{[]int{60}, 100}}, want: []int{60}},
		{name: "no GRO", batch: 8, reads: []read{{[]int{60}, 0}, {[]int{70}, 0}}, want: []int{60, 70}},
		{name: "trains and singles", batch: 12, reads: []read{{[]int{50, 50}, 50}, {[]int{80}, 0}, {[]int{30, 30, 30, 1}, 30}},
			want: []int{50, 50, 80, 30, 30, 30, 1}},
		{name: "64 segments into 128", batch: 128, reads: []read{{slices.Repeat([]int{10}, 64), 10}, {slices.Repeat([]int{10}, 64), 10}},
			want: slices.Repeat([]int{10}, 128)},
		{name: "overflow", batch: 4, reads: []read{{[]int{10, 10}, 10}, {[]int{10, 10, 10}, 10}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := *newMessages(tt.batch)
			for i := range msgs {
				msgs[i].Buffers[0] = make([]byte, 1<<16-1)
			}
			readAt := tt.batch - len(tt.reads)
			var stream []byte
			seq := 0
			for k, r := range tt.reads {
				m := &msgs[readAt+k]
				for _, l := range r.lens {
					for range l {
						m.Buffers[0][m.N] = byte(seq)
						m.N++
					}
					seq++
				}
				stream = append(stream, m.Buffers[0][:m.N]...)
				m.Addr = from(k + 1)
				if r.segment != 0 {
					m.OOB = groControl(r.segment)
					m.NN = len(m.OOB)
				}
			}
			n, err := splitSegments(msgs, readAt, tt.batch)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, %d packets", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var lens []int
			var got []byte
			wantFrom := 1
			for i, m := range msgs[:n] {
				lens = append(lens, m.N)
				p := m.Buffers[0][:m.N]
				got = append(got, p...)
				if p[0] != byte(i) || p[len(p)-1] != byte(i) {
					t.Errorf("packet %d holds bytes of packets %d..%d", i, p[0], p[len(p)-1])
				}
				if m.Addr.String() != from(wantFrom).String() {
					// Packets keep the order of their datagrams.
					wantFrom++
					if m.Addr.String() != from(wantFrom).String() {
						t.Errorf("packet %d from %v", i, m.Addr)
					}
				}
			}
			if !slices.Equal(lens, tt.want) {
				t.Errorf("packet lengths %v, want %v", lens, tt.want)
			}
			if string(got) != string(stream) {
				t.Error("packets do not add up to the datagrams")
			}
		})
	}
}

// refusingConn is a socket whose kernel refuses UDP_SEGMENT as udp_send_skb
// does when the outgoing device has no checksum offload: EIO for any
// datagram with a segment size. Plain datagrams go through.
type refusingConn struct {
	batchConn
	refused int
}

func (c *refusingConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	for _, m := range ms {
		if len(m.OOB) > 0 {
			c.refused++
			return 0, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", unix.EIO)}
		}
	}
	return c.batchConn.WriteBatch(ms, flags)
}

// TestAddrBindGSORefused: when the kernel refuses GSO, Send turns it off,
// resends the same packets one per datagram, and does not try GSO again.
func TestAddrBindGSORefused(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := NewAddrBind(lo), NewAddrBind(lo)
	if _, _, err := a.Open(0); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	recvB, portB, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !a.sock.gso.Load() {
		t.Skip("no UDP GSO on this kernel")
	}
	refusing := &refusingConn{batchConn: a.sock.pc}
	a.sock.pc = refusing
	ep := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(lo, portB)}

	for round := range 2 {
		var bufs [][]byte
		for seq := range 10 {
			bufs = append(bufs, testPacket(round*10+seq))
		}
		if err := a.Send(bufs, ep); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if a.sock.gso.Load() {
		t.Error("GSO still on after EIO")
	}
	if refusing.refused != 1 {
		t.Errorf("GSO tried %d times, want once", refusing.refused)
	}
	if err := receiveStream(recvB[0], 20); err != nil {
		t.Error(err)
	}
}
