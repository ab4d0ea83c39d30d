package overlay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// AddrBind is a conn.Bind on one local address, for a gateway whose
// `listen` names a host address: wireguard-go's own bind listens on every
// address of the host, which is not what an operator who wrote
// "192.168.20.1:51820" asked for.
//
// It batches with recvmmsg/sendmmsg (x/net) and, on Linux, uses the same
// UDP offloads as wireguard-go's bind so that it is as fast: on send,
// same-size packets to one destination go out as one datagram train
// (UDP_SEGMENT, the kernel cuts it); on receive, the kernel hands over
// trains it has merged (UDP_GRO) and AddrBind cuts them by the segment
// size it reports. When the kernel refuses UDP_SEGMENT on a send (EIO: the
// route's device lacks checksum offload) AddrBind turns it off for good and
// sends the packets one by one.
type AddrBind struct {
	addr netip.Addr

	// mu guards the socket across Open and Close.
	mu   sync.Mutex
	sock *addrSocket
}

// addrSocket is one open socket with what its offloads allow.
type addrSocket struct {
	udp *net.UDPConn
	pc  batchConn
	// gso: coalesce on send; cleared once the kernel refuses it.
	gso atomic.Bool
	// gro: the kernel merges received datagrams and says by how much.
	gro bool
	// msgs holds message slices for Send (Send may run concurrently).
	msgs sync.Pool
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

const (
	addrBindBatch = 128

	// maxSegments is the most datagrams the kernel takes in one
	// UDP_SEGMENT send, and the most it merges into one GRO receive.
	maxSegments = 64

	// maxUDPPayload4 and maxUDPPayload6 bound a coalesced datagram: more
	// is EMSGSIZE. IPv6's length field does not count its own header.
	maxUDPPayload4 = 1<<16 - 1 - 20 - 8
	maxUDPPayload6 = 1<<16 - 1 - 8
)

// NewAddrBind returns a bind that listens on addr only.
func NewAddrBind(addr netip.Addr) *AddrBind { return &AddrBind{addr: addr.Unmap()} }

// Open listens on addr:port (port 0: any free port).
func (b *AddrBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.addr, port)))
	if err != nil {
		return nil, 0, err
	}
	s := &addrSocket{udp: udp}
	gso, gro := tuneSocket(udp)
	s.gso.Store(gso)
	s.gro = gro
	if b.addr.Is4() {
		s.pc = ipv4.NewPacketConn(udp)
	} else {
		s.pc = ipv6.NewPacketConn(udp)
	}
	s.msgs.New = func() any { return newMessages(addrBindBatch) }
	b.sock = s
	return []conn.ReceiveFunc{s.receiver()}, uint16(udp.LocalAddr().(*net.UDPAddr).Port), nil
}

// newMessages returns n messages with one buffer and room for a control
// message each.
func newMessages(n int) *[]ipv4.Message {
	msgs := make([]ipv4.Message, n)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
		msgs[i].OOB = make([]byte, 0, segmentControlSize)
	}
	return &msgs
}

// receiver returns the ReceiveFunc of s. It owns its messages: wireguard-go
// calls each ReceiveFunc from one goroutine.
func (s *addrSocket) receiver() conn.ReceiveFunc {
	msgs := *newMessages(addrBindBatch)
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := min(len(packets), len(msgs))
		for i := range n {
			msgs[i].Buffers[0] = packets[i]
			msgs[i].OOB = msgs[i].OOB[:cap(msgs[i].OOB)]
			msgs[i].N, msgs[i].NN, msgs[i].Addr = 0, 0, nil
		}
		// With GRO one datagram may carry up to maxSegments packets: read
		// into the last messages only, and cut what came into the first.
		readAt := 0
		if s.gro {
			readAt = n - max(1, n/maxSegments)
		}
		got, err := s.pc.ReadBatch(msgs[readAt:n], 0)
		if err != nil {
			return 0, err
		}
		if s.gro {
			if got, err = splitSegments(msgs[:n], readAt, readAt+got); err != nil {
				return 0, err
			}
		}
		var last *conn.StdNetEndpoint // segments of one datagram share it
		for i := range got {
			sizes[i] = msgs[i].N
			ua, _ := msgs[i].Addr.(*net.UDPAddr)
			if ua == nil {
				sizes[i] = 0
				continue
			}
			ap := ua.AddrPort()
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if last == nil || last.AddrPort != ap {
				last = &conn.StdNetEndpoint{AddrPort: ap}
			}
			eps[i] = last
		}
		return got, nil
	}
}

// splitSegments cuts the datagrams read into msgs[from:to] by the segment
// size in their control message (none: one packet) into msgs[0:], in order,
// and returns how many packets there are. The packets must fit: a datagram
// at index i may fill at most the messages up to i.
func splitSegments(msgs []ipv4.Message, from, to int) (int, error) {
	n := 0
	for i := from; i < to; i++ {
		m := &msgs[i]
		size, err := segmentSize(m.OOB[:m.NN])
		if err != nil {
			return 0, err
		}
		if size <= 0 {
			size = max(m.N, 1)
		}
		data, addr := m.Buffers[0][:m.N], m.Addr
		for start := 0; start < len(data); start += size {
			if n > i {
				return 0, errors.New("overlay: received UDP segments overflow the batch")
			}
			end := min(start+size, len(data))
			msgs[n].N = copy(msgs[n].Buffers[0], data[start:end])
			msgs[n].Addr = addr
			n++
		}
	}
	return n, nil
}

// coalesce fills msgs with bufs, all to dst: with GSO, a run of packets of
// one size (the last may be shorter) is appended to its first packet, in
// that packet's spare capacity, and sent as one datagram with the size in a
// UDP_SEGMENT control message. It returns how many messages it filled.
func coalesce(msgs []ipv4.Message, bufs [][]byte, dst *net.UDPAddr, gso bool) int {
	maxPayload := maxUDPPayload4
	if dst.IP.To4() == nil {
		maxPayload = maxUDPPayload6
	}
	n := -1
	var (
		size   int  // segment size of msgs[n]
		count  int  // packets in msgs[n]
		closed bool // msgs[n] ended with a short packet
	)
	for _, buf := range bufs {
		if gso && n >= 0 && !closed && count < maxSegments {
			train := msgs[n].Buffers[0]
			if len(buf) <= size && len(train)+len(buf) <= maxPayload && len(buf) <= cap(train)-len(train) {
				msgs[n].Buffers[0] = append(train, buf...)
				count++
				closed = len(buf) < size
				continue
			}
		}
		if n >= 0 && count > 1 {
			msgs[n].OOB = appendSegmentSize(msgs[n].OOB[:0], uint16(size))
		}
		n++
		msgs[n].Buffers[0], msgs[n].Addr, msgs[n].OOB = buf, dst, msgs[n].OOB[:0]
		size, count, closed = len(buf), 1, false
	}
	if n >= 0 && count > 1 {
		msgs[n].OOB = appendSegmentSize(msgs[n].OOB[:0], uint16(size))
	}
	return n + 1
}

// Close closes the socket; pending receives return an error.
func (b *AddrBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock == nil {
		return nil
	}
	err := b.sock.udp.Close()
	b.sock = nil
	return err
}

// SetMark is not supported (no fwmark on a single-address socket).
func (b *AddrBind) SetMark(uint32) error { return nil }

// Send writes bufs to ep in as few sendmmsg calls, and datagrams, as it
// can. A packet's spare capacity may be overwritten (GSO).
func (b *AddrBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	s := b.sock
	b.mu.Unlock()
	if s == nil {
		return net.ErrClosed
	}
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return errors.New("overlay: wrong endpoint type")
	}
	dst := net.UDPAddrFromAddrPort(se.AddrPort)
	pooled := s.msgs.Get().(*[]ipv4.Message)
	defer s.msgs.Put(pooled)
	msgs := *pooled
	if len(bufs) > len(msgs) {
		msgs = *newMessages(len(bufs))
	}
	gso := s.gso.Load()
	err := s.write(msgs[:coalesce(msgs, bufs, dst, gso)])
	if gso && gsoRefused(err) {
		s.gso.Store(false)
		err = s.write(msgs[:coalesce(msgs, bufs, dst, false)])
	}
	for i := range msgs[:len(bufs)] {
		msgs[i].Buffers[0], msgs[i].Addr = nil, nil // keep no packet alive
	}
	return err
}

func (s *addrSocket) write(msgs []ipv4.Message) error {
	for len(msgs) > 0 {
		n, err := s.pc.WriteBatch(msgs, 0)
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// ParseEndpoint parses ip:port.
func (b *AddrBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

// BatchSize is how many packets one receive or send may carry.
func (b *AddrBind) BatchSize() int { return addrBindBatch }
