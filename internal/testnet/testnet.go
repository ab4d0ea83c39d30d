// Package testnet is the servers wardgate's tests talk to on loopback: a
// UDP echo server and a DNS server, each closed, and its goroutines
// ended, when the test ends. One home, so that the gateway, dnsfilter
// and interop tests do not each write their own. It is for tests only.
package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// UDPEcho starts a server on 127.0.0.1 that sends every datagram back to
// where it came from, and returns its address.
func UDPEcho(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// DNS is a DNS server on 127.0.0.1, UDP and TCP on the same port.
type DNS struct {
	Addr    string       // host:port
	Queries atomic.Int64 // queries seen, over UDP and TCP
	TCP     atomic.Int64 // of which over TCP
}

// NewDNS starts a DNS server that answers with h.
func NewDNS(t testing.TB, h dns.HandlerFunc) *DNS {
	t.Helper()
	d := &DNS{}
	var pc net.PacketConn
	var l net.Listener
	for range 20 { // a UDP port whose TCP twin is free too
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("testnet: no port free for UDP and TCP")
	}
	d.Addr = pc.LocalAddr().String()
	count := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		d.Queries.Add(1)
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			d.TCP.Add(1)
		}
		h(w, r)
	})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs last: cleanups run in reverse order
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: count}, {Listener: l, Handler: count}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { s.ActivateAndServe() })
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return d
}

// AnswerA answers every A question with addr (TTL ttl), and every other
// question with NOERROR and no answer.
func AnswerA(addr string, ttl uint32) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if r.Question[0].Qtype == dns.TypeA {
			rr, err := dns.NewRR(fmt.Sprintf("%s %d IN A %s", r.Question[0].Name, ttl, addr))
			if err != nil {
				panic(err) // a test's bad address
			}
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	}
}
