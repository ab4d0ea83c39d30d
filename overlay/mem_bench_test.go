package overlay_test

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/wardgate/wardgate/overlay"
)

// BenchmarkIdleConnMemory reports the heap held per idle, established TCP
// connection through the overlay: the gateway's gVisor endpoint and gonet
// conn plus the client's (a wgclient netstack), so an upper bound for the
// gateway's share. b.N connections are opened and held; use a few hundred
// (-benchtime 500x), since small counts drown in GC noise.
func BenchmarkIdleConnMemory(b *testing.B) {
	held := make(chan net.Conn, 1<<16)
	n := newTestNet(b, memTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) {
			c, err := r.Accept()
			if err == nil {
				held <- c
			}
		},
		UDP: refuseUDP,
	}, overlay.Config{})
	p := n.clients(1)[0]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, b.N)
	for range b.N {
		c, err := p.DialContext(context.Background(), "tcp", "100.81.0.10:80")
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	gwConns := make([]net.Conn, 0, b.N)
	for range b.N {
		gwConns = append(gwConns, <-held)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/conn")
	for _, c := range append(conns, gwConns...) {
		c.Close()
	}
}
