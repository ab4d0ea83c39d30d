package dnsfilter

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
)

// benchWriter packs each reply, as the server would, and throws it away.
type benchWriter struct {
	fakeWriter
	buf []byte
}

func (w *benchWriter) WriteMsg(m *dns.Msg) error {
	var err error
	w.buf, err = m.PackBuffer(w.buf)
	return err
}

// serveBench runs ServeDNS on a query for name from alice in parallel and
// reports queries per second (over all goroutines).
func serveBench(b *testing.B, f *Filter, name string, qtype uint16) {
	r := new(dns.Msg)
	r.SetQuestion(dns.Fqdn(name), qtype)
	wire, err := r.Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := &benchWriter{fakeWriter: fakeWriter{remote: aliceAddr}}
		for pb.Next() {
			// Each query unpacked afresh, as the server hands it over.
			req := new(dns.Msg)
			if err := req.Unpack(wire); err != nil {
				b.Error(err)
				return
			}
			f.ServeDNS(w, req)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "qps")
}

func benchFilter(b *testing.B) *Filter {
	up := testnet.NewDNS(b, testnet.AnswerA("93.184.216.34", 3600))
	f, _, _ := newTestFilter(b, Config{Upstreams: []string{up.Addr}, RatePerIdentity: 1e12, Burst: 1 << 30}, testView())
	return f
}

// BenchmarkServeCached: a forwarded name answered from the cache.
func BenchmarkServeCached(b *testing.B) {
	f := benchFilter(b)
	ask(b, f, aliceAddr, "www.example.com", dns.TypeA) // prime the cache
	serveBench(b, f, "www.example.com", dns.TypeA)
}

// BenchmarkServeCachedEgress: a cached name that also refreshes an egress
// allowance.
func BenchmarkServeCachedEgress(b *testing.B) {
	f := benchFilter(b)
	ask(b, f, aliceAddr, "www.nhs.uk", dns.TypeA)
	serveBench(b, f, "www.nhs.uk", dns.TypeA)
}

// BenchmarkServeService: a service name answered from the policy.
func BenchmarkServeService(b *testing.B) {
	serveBench(b, benchFilter(b), "pacs.nhs.internal", dns.TypeA)
}

// BenchmarkServeUDP: the whole server over loopback UDP, one client
// socket per goroutine, for comparison with the in-process figures.
func BenchmarkServeUDP(b *testing.B) {
	f := benchFilter(b)
	v := f.view().(*fakeView)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	v.ids[0].Address = mustAddr("127.0.0.1")
	done := make(chan error, 1)
	ctx, cancel := contextWithCancel()
	go func() { done <- f.Serve(ctx, pc, nil) }()
	defer func() { cancel(); <-done }()
	addr := pc.LocalAddr().String()
	r := new(dns.Msg)
	r.SetQuestion("pacs.nhs.internal.", dns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		co, err := dns.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer co.Close()
		for pb.Next() {
			co.SetDeadline(time.Now().Add(2 * time.Second))
			if err := co.WriteMsg(r); err != nil {
				b.Error(err)
				return
			}
			if _, err := co.ReadMsg(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "qps")
}
