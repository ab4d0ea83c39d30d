package overlay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// TestAddrBind: a bind on one address listens there only, and carries
// batches both ways.
func TestAddrBind(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := NewAddrBind(lo), NewAddrBind(lo)
	_, portA, err := a.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	recvB, portB, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.sock.udp.LocalAddr().(*net.UDPAddr).AddrPort(); got != netip.AddrPortFrom(lo, portB) {
		t.Fatalf("bound to %v, want 127.0.0.1:%d only", got, portB)
	}
	if _, _, err := a.Open(0); err != conn.ErrBindAlreadyOpen {
		t.Errorf("second Open: %v", err)
	}

	ep, err := a.ParseEndpoint(netip.AddrPortFrom(lo, portB).String())
	if err != nil {
		t.Fatal(err)
	}
	sent := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	if err := a.Send(sent, ep); err != nil {
		t.Fatal(err)
	}
	bufs := packetBufs(b.BatchSize())
	sizes, eps := make([]int, len(bufs)), make([]conn.Endpoint, len(bufs))
	var got []string
	for len(got) < len(sent) {
		n, err := recvB[0](bufs, sizes, eps)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, string(bufs[i][:sizes[i]]))
			if want := netip.AddrPortFrom(lo, portA).String(); eps[i].DstToString() != want {
				t.Errorf("packet from %s, want %s", eps[i].DstToString(), want)
			}
		}
	}
	for i := range sent {
		if got[i] != string(sent[i]) {
			t.Errorf("packet %d = %q, want %q", i, got[i], sent[i])
		}
	}
	b.Close()
	if _, err := recvB[0](bufs, sizes, eps); err == nil {
		t.Error("receive after Close succeeded")
	}
}

// packetBufs are receive buffers as wireguard-go gives them: room for a
// whole GRO train each.
func packetBufs(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<16-1)
	}
	return bufs
}

// testPacket is packet seq of a stream: its number, then a pattern that
// depends on both, so a packet cut at the wrong place or glued to the next
// one is seen. Sizes repeat in runs of 50 with one shorter packet closing
// each run, as a TCP flow's packets do.
func testPacket(seq int) []byte {
	size := 1200
	if seq%50 == 49 {
		size = 200 + seq%500
	}
	p := make([]byte, size, 1<<16-1) // spare capacity, as wireguard-go's buffers have
	binary.BigEndian.PutUint32(p, uint32(seq))
	for i := 4; i < size; i++ {
		p[i] = byte(seq + i)
	}
	return p
}

// TestAddrBindLoopback: two binds on loopback carry thousands of packets
// in batches of wireguard-go's size, each packet whole and once, in order
// (loopback does not reorder), over IPv4 and IPv6; with GSO and GRO where
// the kernel has them. A third bind gets only what is sent to it.
func TestAddrBindLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			lo := netip.MustParseAddr(addr)
			a, b, c := NewAddrBind(lo), NewAddrBind(lo), NewAddrBind(lo)
			for _, x := range []*AddrBind{a, b, c} {
				defer x.Close()
			}
			if _, _, err := a.Open(0); err != nil {
				t.Skipf("no %s: %v", addr, err)
			}
			recvB, portB, err := b.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			recvC, portC, err := c.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("offloads: gso %v, gro %v", a.sock.gso.Load(), b.sock.gro)
			// A lost packet fails the test instead of hanging it.
			for _, x := range []*AddrBind{b, c} {
				x.sock.udp.SetReadDeadline(time.Now().Add(20 * time.Second))
			}
			epB := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(lo, portB)}
			epC := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(lo, portC)}

			const total, batch = 5000, 128
			var wg sync.WaitGroup
			results := make([]error, 2)
			for i, recv := range []conn.ReceiveFunc{recvB[0], recvC[0]} {
				wg.Go(func() { results[i] = receiveStream(recv, total/2) })
			}
			// Even packets to b, odd to c, so one batch never mixes them.
			for start := 0; start < total; start += 2 * batch {
				for k, ep := range []*conn.StdNetEndpoint{epB, epC} {
					var bufs [][]byte
					for seq := start + k; seq < min(start+2*batch, total); seq += 2 {
						bufs = append(bufs, testPacket(seq/2))
					}
					if err := a.Send(bufs, ep); err != nil {
						t.Fatal(err)
					}
				}
			}
			wg.Wait()
			for i, err := range results {
				if err != nil {
					t.Errorf("receiver %d: %v", i, err)
				}
			}
		})
	}
}

// receiveStream reads n packets from recv and checks they are testPacket
// 0 to n-1 in order.
func receiveStream(recv conn.ReceiveFunc, n int) error {
	bufs := packetBufs(addrBindBatch)
	sizes, eps := make([]int, len(bufs)), make([]conn.Endpoint, len(bufs))
	next := 0
	for next < n {
		got, err := recv(bufs, sizes, eps)
		if err != nil {
			return err
		}
		for i := range got {
			want := testPacket(next)
			if p := bufs[i][:sizes[i]]; string(p) != string(want) {
				return fmt.Errorf("packet %d: got %d bytes (seq %d), want %d bytes", next, len(p), binary.BigEndian.Uint32(p), len(want))
			}
			next++
		}
	}
	return nil
}
