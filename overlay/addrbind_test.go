package overlay

import (
	"net"
	"net/netip"
	"testing"

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
	if got := b.udp.LocalAddr().(*net.UDPAddr).AddrPort(); got != netip.AddrPortFrom(lo, portB) {
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
	bufs := make([][]byte, b.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
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
