package overlay

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// AddrBind is a conn.Bind on one local address, for a gateway whose
// `listen` names a host address: wireguard-go's own bind listens on every
// address of the host, which is not what an operator who wrote
// "192.168.20.1:51820" asked for. It batches with recvmmsg/sendmmsg (x/net)
// but has no UDP GSO/GRO offloads, so a wildcard listen (the default bind)
// stays the fastest.
type AddrBind struct {
	addr netip.Addr

	// mu guards the socket across Open and Close.
	mu  sync.Mutex
	udp *net.UDPConn
	pc  batchConn
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

const addrBindBatch = 128

// NewAddrBind returns a bind that listens on addr only.
func NewAddrBind(addr netip.Addr) *AddrBind { return &AddrBind{addr: addr.Unmap()} }

// Open listens on addr:port (port 0: any free port).
func (b *AddrBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.addr, port)))
	if err != nil {
		return nil, 0, err
	}
	b.udp = udp
	if b.addr.Is4() {
		b.pc = ipv4.NewPacketConn(udp)
	} else {
		b.pc = ipv6.NewPacketConn(udp)
	}
	pc := b.pc
	msgs := make([]ipv4.Message, addrBindBatch)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := min(len(packets), len(msgs))
		for i := range n {
			msgs[i].Buffers[0] = packets[i]
			msgs[i].N, msgs[i].Addr = 0, nil
		}
		got, err := pc.ReadBatch(msgs[:n], 0)
		if err != nil {
			return 0, err
		}
		for i := range got {
			sizes[i] = msgs[i].N
			ua, _ := msgs[i].Addr.(*net.UDPAddr)
			if ua == nil {
				sizes[i] = 0
				continue
			}
			ap := ua.AddrPort()
			eps[i] = &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
		}
		return got, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(udp.LocalAddr().(*net.UDPAddr).Port), nil
}

// Close closes the socket; pending receives return an error.
func (b *AddrBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp == nil {
		return nil
	}
	err := b.udp.Close()
	b.udp, b.pc = nil, nil
	return err
}

// SetMark is not supported (no fwmark on a single-address socket).
func (b *AddrBind) SetMark(uint32) error { return nil }

// Send writes bufs to ep in one sendmmsg where it can.
func (b *AddrBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	pc := b.pc
	b.mu.Unlock()
	if pc == nil {
		return net.ErrClosed
	}
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return errors.New("overlay: wrong endpoint type")
	}
	dst := net.UDPAddrFromAddrPort(se.AddrPort)
	msgs := make([]ipv4.Message, len(bufs))
	for i, buf := range bufs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{buf}, Addr: dst}
	}
	for len(msgs) > 0 {
		n, err := pc.WriteBatch(msgs, 0)
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
