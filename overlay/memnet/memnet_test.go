package memnet

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

func recvOne(t *testing.T, fn conn.ReceiveFunc) (string, conn.Endpoint) {
	t.Helper()
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500)}
	sizes := make([]int, 2)
	eps := make([]conn.Endpoint, 2)
	n, err := fn(bufs, sizes, eps)
	if err != nil || n < 1 {
		t.Fatalf("receive: %d, %v", n, err)
	}
	return string(bufs[0][:sizes[0]]), eps[0]
}

func TestSwitchDelivers(t *testing.T) {
	sw := NewSwitch()
	a := sw.BindAt(netip.MustParseAddrPort("10.0.0.1:51820"))
	b := sw.Bind(netip.MustParseAddr("10.0.0.2"))
	fa, pa, err := a.Open(0)
	if err != nil || pa != 51820 {
		t.Fatalf("open a: port %d, %v", pa, err)
	}
	fb, pb, err := b.Open(0)
	if err != nil || pb == 0 {
		t.Fatalf("open b: port %d, %v", pb, err)
	}
	ep, err := b.ParseEndpoint("10.0.0.1:51820")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{[]byte("hello")}, ep); err != nil {
		t.Fatal(err)
	}
	got, from := recvOne(t, fa[0])
	if got != "hello" || from.DstToString() != netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), pb).String() {
		t.Errorf("got %q from %v", got, from.DstToString())
	}
	// Reply to where it came from.
	if err := a.Send([][]byte{[]byte("back")}, from); err != nil {
		t.Fatal(err)
	}
	if got, _ := recvOne(t, fb[0]); got != "back" {
		t.Errorf("reply %q", got)
	}
	// Unknown destination: silently lost, like UDP.
	lost, _ := a.ParseEndpoint("10.9.9.9:1")
	if err := a.Send([][]byte{[]byte("x")}, lost); err != nil {
		t.Errorf("send to nobody: %v", err)
	}
	// Close makes receive return net.ErrClosed, and frees the address.
	a.Close()
	bufs, sizes, eps := [][]byte{make([]byte, 10)}, []int{0}, []conn.Endpoint{nil}
	if _, err := fa[0](bufs, sizes, eps); !errors.Is(err, net.ErrClosed) {
		t.Errorf("receive after close: %v", err)
	}
	if _, _, err := a.Open(0); err != nil {
		t.Errorf("reopen: %v", err)
	}
	b.Close()
}

func TestAddressInUse(t *testing.T) {
	sw := NewSwitch()
	ap := netip.MustParseAddrPort("10.0.0.1:1")
	if _, _, err := sw.BindAt(ap).Open(0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sw.BindAt(ap).Open(0); err == nil {
		t.Error("second bind on the same address opened")
	}
}
