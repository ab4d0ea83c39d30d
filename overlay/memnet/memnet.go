// Package memnet is an in-memory UDP network for WireGuard devices: a Switch
// connects Binds (conn.Bind implementations), each with its own address, so
// that many devices in one process talk without sockets.
//
// It behaves like UDP on a loopback: datagrams are copied, delivered in order
// per sender, and dropped when the receiver's queue is full or the receiver
// is closed or unknown. Send never blocks.
package memnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// QueueLen is how many datagrams wait at a receiving bind before more are
// dropped.
const QueueLen = 4096

// batchSize is the Bind's BatchSize.
const batchSize = 128

// Switch delivers datagrams between the binds attached to it.
type Switch struct {
	// mu guards ports.
	mu    sync.Mutex
	ports map[netip.AddrPort]*Bind
}

// NewSwitch returns an empty switch.
func NewSwitch() *Switch {
	return &Switch{ports: make(map[netip.AddrPort]*Bind)}
}

// Bind returns a new bind on the switch with address addr. When Open is
// called, the bind listens on addr's port, or when that is zero on the port
// Open is asked for, or when that is zero too on a free port.
func (s *Switch) Bind(addr netip.Addr) *Bind {
	return &Bind{sw: s, ip: addr.Unmap()}
}

// BindAt returns a new bind whose address and port are fixed by ap.
func (s *Switch) BindAt(ap netip.AddrPort) *Bind {
	return &Bind{sw: s, ip: ap.Addr().Unmap(), fixedPort: ap.Port()}
}

func (s *Switch) attach(b *Bind, port uint16) (netip.AddrPort, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if port == 0 {
		for p := uint16(20000); p != 0; p++ {
			if _, used := s.ports[netip.AddrPortFrom(b.ip, p)]; !used {
				port = p
				break
			}
		}
	}
	ap := netip.AddrPortFrom(b.ip, port)
	if _, used := s.ports[ap]; used {
		return netip.AddrPort{}, fmt.Errorf("memnet: %v: address in use", ap)
	}
	s.ports[ap] = b
	return ap, nil
}

func (s *Switch) detach(ap netip.AddrPort, b *Bind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[ap] == b {
		delete(s.ports, ap)
	}
}

func (s *Switch) lookup(ap netip.AddrPort) *Bind {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[ap]
}

type datagram struct {
	from netip.AddrPort
	data *[]byte // from bufPool when cap is pooledSize
}

// pooledSize is the capacity of pooled datagram buffers: larger than any
// WireGuard message for a 1500-byte link MTU. Larger datagrams are
// allocated.
const pooledSize = 2048

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, pooledSize)
	return &b
}}

func newData(b []byte) *[]byte {
	if len(b) > pooledSize {
		c := append([]byte(nil), b...)
		return &c
	}
	p := bufPool.Get().(*[]byte)
	*p = append((*p)[:0], b...)
	return p
}

func freeData(p *[]byte) {
	if cap(*p) == pooledSize {
		bufPool.Put(p)
	}
}

// Bind is a conn.Bind on a Switch.
type Bind struct {
	sw        *Switch
	ip        netip.Addr
	fixedPort uint16

	// mu guards the fields below, which Open sets and Close clears.
	mu   sync.Mutex
	addr netip.AddrPort // zero when closed
	rx   chan datagram
	done chan struct{}
}

var _ conn.Bind = (*Bind)(nil)

// Endpoint is a memnet address.
type Endpoint netip.AddrPort

var _ conn.Endpoint = Endpoint{}

func (e Endpoint) ClearSrc()           {}
func (e Endpoint) SrcToString() string { return "" }
func (e Endpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e Endpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e Endpoint) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e Endpoint) SrcIP() netip.Addr { return netip.Addr{} }

// Addr is the bind's address while it is open.
func (b *Bind) Addr() netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Open attaches the bind to the switch.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addr.IsValid() {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if b.fixedPort != 0 {
		port = b.fixedPort
	}
	ap, err := b.sw.attach(b, port)
	if err != nil {
		return nil, 0, err
	}
	b.addr = ap
	b.rx = make(chan datagram, QueueLen)
	b.done = make(chan struct{})
	return []conn.ReceiveFunc{b.receiveFunc(b.rx, b.done)}, ap.Port(), nil
}

func (b *Bind) receiveFunc(rx chan datagram, done chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var d datagram
		select {
		case d = <-rx:
		case <-done:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], *d.data)
			freeData(d.data)
			eps[n] = Endpoint(d.from)
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case d = <-rx:
			default:
				return n, nil
			}
		}
	}
}

// Close detaches the bind; its receive funcs return net.ErrClosed.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.addr.IsValid() {
		return nil
	}
	b.sw.detach(b.addr, b)
	close(b.done)
	b.addr = netip.AddrPort{}
	return nil
}

func (b *Bind) SetMark(uint32) error { return nil }
func (b *Bind) BatchSize() int       { return batchSize }

// Send delivers copies of bufs to the bind at ep, dropping what does not fit.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst, ok := ep.(Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	from := b.addr
	b.mu.Unlock()
	if !from.IsValid() {
		return net.ErrClosed
	}
	to := b.sw.lookup(netip.AddrPort(dst))
	if to == nil {
		return nil // like UDP: nobody listening, the datagram is lost
	}
	to.mu.Lock()
	rx, done := to.rx, to.done
	to.mu.Unlock()
	if rx == nil {
		return nil
	}
	for _, buf := range bufs {
		select {
		case <-done:
			return nil
		default:
		}
		d := datagram{from: from, data: newData(buf)}
		select {
		case rx <- d:
		default: // queue full: dropped
			freeData(d.data)
		}
	}
	return nil
}

// ParseEndpoint parses "ip:port".
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, errors.Join(errors.New("memnet: bad endpoint"), err)
	}
	return Endpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}
