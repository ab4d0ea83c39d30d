package overlay_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay"
)

// echoTCP accepts every request and echoes until EOF, then half-closes.
func echoTCP(r *overlay.TCPRequest) {
	c, err := r.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	io.Copy(c, c)
	c.(interface{ CloseWrite() error }).CloseWrite()
}

func refuseUDP(src, dst netip.AddrPort) func(net.Conn) { return nil }

func TestTCPEcho(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		var mu sync.Mutex
		seen := map[netip.AddrPort]netip.AddrPort{}
		n := newTestNet(t, tr, overlay.Handler{
			TCP: func(r *overlay.TCPRequest) {
				mu.Lock()
				seen[r.Src] = r.Dst
				mu.Unlock()
				echoTCP(r)
			},
			UDP: refuseUDP,
		}, overlay.Config{})
		ps := n.clients(3)
		dst := "100.81.0.10:443"
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := p.DialContext(ctxTimeout(t, 10*time.Second), "tcp", dst)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				want := make([]byte, 1<<20)
				rand.Read(want)
				go func() {
					c.Write(want)
					c.(interface{ CloseWrite() error }).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%v: echoed %d bytes, want %d identical", p.addr, len(got), len(want))
				}
			}()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for src, d := range seen {
			found := false
			for _, p := range ps {
				found = found || p.addr == src.Addr()
			}
			if !found || d.String() != dst {
				t.Errorf("handler saw %v -> %v", src, d)
			}
		}
		if len(seen) != len(ps) {
			t.Errorf("handler saw %d flows, want %d", len(seen), len(ps))
		}
	})
}

func TestTCPReject(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		n := newTestNet(t, tr, overlay.Handler{
			TCP: func(r *overlay.TCPRequest) { r.Reject() },
			UDP: refuseUDP,
		}, overlay.Config{})
		p := n.clients(1)[0]
		// Warm the tunnel so the timing below measures the reset only.
		_, _ = p.DialContext(ctxTimeout(t, 10*time.Second), "tcp", "100.81.0.10:22")
		start := time.Now()
		_, err := p.DialContext(ctxTimeout(t, 10*time.Second), "tcp", "100.81.0.10:22")
		if !errors.Is(err, syscall.ECONNREFUSED) && !isRefused(err) {
			t.Fatalf("dial: %v, want connection refused", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refusal took %v", d)
		}
	})
}

func isRefused(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("refused"))
}
