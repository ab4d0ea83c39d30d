package dnsfilter

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPFloodIsDropped: a flood of queries from one source is dropped
// before any work beyond its share, goroutines stay bounded, and another
// identity is answered throughout.
func TestUDPFloodIsDropped(t *testing.T) {
	v := testView()
	v.ids[0].Address = netip.MustParseAddr("127.0.0.1")
	v.ids[1].Address = netip.MustParseAddr("127.0.0.2")
	f, _, _ := newTestFilter(t, Config{RatePerIdentity: 50, Burst: 50}, v)
	addr, _ := serveLoopback(t, f)

	flood, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	q := new(dns.Msg)
	q.SetQuestion("pacs.nhs.internal.", dns.TypeA)
	wire, _ := q.Pack()
	before := runtime.NumGoroutine()
	peak := 0
	const sent = 20000
	for i := range sent {
		flood.Write(wire)
		if i%1000 == 0 {
			peak = max(peak, runtime.NumGoroutine())
		}
	}
	// bob, right after the flood, retrying as resolvers do: the socket's
	// own buffer may still drop a datagram while the reader drains the
	// flood.
	c := &dns.Client{Net: "udp", Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}}}
	for i := range 5 {
		var m *dns.Msg
		for try := 0; try < 3 && m == nil; try++ {
			m, _, err = c.Exchange(q, addr)
		}
		if m == nil || m.Rcode != dns.RcodeNameError {
			t.Fatalf("bob's query %d after alice's flood: %v %v", i, m, err)
		}
	}
	// Admitted are 4x alice's burst (200) and rate; the kernel drops some
	// of the rest before the server reads them, admission drops the others.
	if st := f.Stats(); st.Dropped == 0 || st.Queries > 1000 {
		t.Errorf("%d queries answered, %d dropped of %d sent; want at most ~200 answered", st.Queries, st.Dropped, sent)
	}
	if peak-before > maxUDPInflight+50 {
		t.Errorf("goroutines rose by %d during the flood; admission bounds them at %d", peak-before, maxUDPInflight)
	}
}
