package overlay_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/overlay/memnet"
)

const benchChunk = 64 << 10

// discardTCP accepts and reads until EOF, then closes.
func discardTCP(r *overlay.TCPRequest) {
	c, err := r.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	io.Copy(io.Discard, c)
}

// pump writes b.N chunks to c, half-closes, and waits for the far end to
// close (it has read everything).
func pump(b *testing.B, c net.Conn) {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, c)
	b.StopTimer()
	// MB per CPU-second of the whole process (both ends, crypto, stack):
	// unlike MB/s it barely moves when other work shares the cores.
	mb := float64(b.N) * benchChunk / 1e6
	b.ReportMetric(mb/(cpuTime()-cpu0).Seconds(), "MB/cpu-s")
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTCPThroughput: one TCP flow from a WireGuard peer into an overlay
// handler that discards.
//
//   - client: a wgclient (wireguard-go's tun/netstack, batch size 1) sends;
//     this is what a peer on wireguard-go's netstack gets, and the client
//     side is the bottleneck.
//   - sitelink: one overlay dials another over the overlay (DialTCP, as
//     site links do); both ends are this package's link endpoint.
//
// Figures: see the package documentation (doc.go).
func BenchmarkTCPThroughput(b *testing.B) {
	for _, tr := range transports {
		b.Run("client/"+string(tr), func(b *testing.B) {
			n := newTestNet(b, tr, overlay.Handler{TCP: discardTCP, UDP: refuseUDP}, overlay.Config{})
			p := n.clients(1)[0]
			c, err := p.DialContext(context.Background(), "tcp", "100.81.0.10:9")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			pump(b, c)
		})
	}
	for _, v := range benchVariants {
		for _, tr := range transports {
			b.Run("sitelink/"+string(tr)+"/"+v.name, func(b *testing.B) {
				if v.batch != 0 {
					defer overlay.SetLinkBatchSize(overlay.SetLinkBatchSize(v.batch))
				}
				if v.gso != "" {
					defer overlay.SetLinkGSO(overlay.SetLinkGSO(gsoMode(v.gso)))
				}
				if v.nogro {
					defer overlay.SetLinkGRO(overlay.SetLinkGRO(false))
				}
				src, _ := siteLinkPair(b, tr, v.tcp)
				c, err := src.DialTCP(context.Background(), netip.MustParseAddrPort("100.81.1.10:9"))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				pump(b, c)
			})
		}
	}
}

// benchVariants compare TCP and link settings side by side.
var benchVariants = []struct {
	name  string
	tcp   overlay.TCPConfig
	batch int
	nogro bool
	gso   string // "": default (host)
}{
	{name: "default"},
	{name: "batch1", batch: 1},
	{name: "nogro", nogro: true},
	{name: "nogso", gso: "none"},
	{name: "gvisorgso", gso: "gvisor"},
	{name: "buf1M", tcp: overlay.TCPConfig{ReceiveBufferMax: 1 << 20, SendBufferMax: 1 << 20}},
	{name: "buf8M", tcp: overlay.TCPConfig{ReceiveBufferMax: 8 << 20, SendBufferMax: 8 << 20}},
	{name: "buf16M", tcp: overlay.TCPConfig{ReceiveBufferMax: 16 << 20, SendBufferMax: 16 << 20}},
	{name: "cubic", tcp: overlay.TCPConfig{CongestionControl: "cubic"}},
	// The default once more: how far apart two identical variants land is
	// the noise floor of the comparison.
	{name: "default2"},
}

func gsoMode(name string) int {
	switch name {
	case "none":
		return overlay.GSONone
	case "gvisor":
		return overlay.GSOGVisor
	}
	return overlay.GSOHost
}

// siteLinkPair starts two overlays that are each other's peer: a
// (100.80.0.1) and b (100.80.0.2, routing 100.81.1.0/24 to its discard
// handler).
func siteLinkPair(b testing.TB, tr transport, tc overlay.TCPConfig) (*overlay.Overlay, *overlay.Overlay) {
	return siteLinkPairWith(b, tr, tc, discardTCP)
}

func siteLinkPairWith(b testing.TB, tr transport, tc overlay.TCPConfig, tcp func(*overlay.TCPRequest)) (*overlay.Overlay, *overlay.Overlay) {
	ka, kb := mustKey(b), mustKey(b)
	h := overlay.Handler{TCP: tcp, UDP: refuseUDP}
	ca := overlay.Config{PrivateKey: ka, Address: netip.MustParseAddr("100.80.0.1"), Handler: h, TCP: tc}
	cb := overlay.Config{PrivateKey: kb, Address: netip.MustParseAddr("100.80.0.2"), Handler: h, TCP: tc}
	if tr == memTransport {
		sw := memnet.NewSwitch()
		ca.Bind = sw.BindAt(netip.MustParseAddrPort("10.0.0.1:51820"))
		cb.Bind = sw.BindAt(netip.MustParseAddrPort("10.0.0.2:51820"))
	}
	a, err := overlay.New(ca)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	bb, err := overlay.New(cb)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bb.Close() })
	epA, epB := netip.MustParseAddrPort("10.0.0.1:51820"), netip.MustParseAddrPort("10.0.0.2:51820")
	if tr == udpTransport {
		lo := netip.MustParseAddr("127.0.0.1")
		epA, epB = netip.AddrPortFrom(lo, a.Port()), netip.AddrPortFrom(lo, bb.Port())
	}
	if err := a.SetPeers([]overlay.Peer{{
		PublicKey:  kb.Public(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.2/32"), netip.MustParsePrefix("100.81.1.0/24")},
		Endpoint:   epB,
	}}); err != nil {
		b.Fatal(err)
	}
	if err := bb.SetPeers([]overlay.Peer{{
		PublicKey:  ka.Public(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.1/32")},
		Endpoint:   epA,
	}}); err != nil {
		b.Fatal(err)
	}
	return a, bb
}
