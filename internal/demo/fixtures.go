package demo

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// backend is an HTTP server on loopback standing in for a clinical system.
// "/" answers with its name; "/stream" (when streaming) sends a line every
// 100 ms until the client goes away, as an image viewer loading slices does.
type backend struct {
	addr netip.AddrPort
	name string
	srv  *http.Server
	wg   sync.WaitGroup
}

// startBackend listens on ip:port, or on a free port of ip when port is
// taken (another demo running), or on 127.0.0.1 when ip is not usable.
func startBackend(ip string, port uint16, name string, streaming bool) (*backend, error) {
	ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		ln, err = net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	}
	if err != nil {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
	}
	if err != nil {
		return nil, err
	}
	b := &backend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "%s: %s\n", name, r.URL.Path)
	})
	if streaming {
		mux.HandleFunc("/stream", func(rw http.ResponseWriter, r *http.Request) {
			fl := http.NewResponseController(rw)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for i := 1; i <= 600; i++ {
				if _, err := fmt.Fprintf(rw, "slice %03d\n", i); err != nil {
					return
				}
				if fl.Flush() != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-t.C:
				}
			}
		})
	}
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.srv.Serve(ln)
	}()
	return b, nil
}

func (b *backend) close() {
	b.srv.Close()
	b.wg.Wait()
}

// trustResolver is the trust's own DNS resolver, the gateways' upstream
// for names that are not services. It answers every A question with
// publicAddr and remembers what it was asked.
type trustResolver struct {
	addr  netip.AddrPort
	srv   *dns.Server
	mu    sync.Mutex
	asked map[string]int
	done  chan struct{}
}

func startTrustResolver() (*trustResolver, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &trustResolver{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), asked: make(map[string]int), done: make(chan struct{})}
	started := make(chan struct{})
	r.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(r.serve)}
	go func() {
		defer close(r.done)
		r.srv.ActivateAndServe()
	}()
	select {
	case <-started:
	case <-r.done:
		return nil, errors.New("trust resolver did not start")
	}
	return r, nil
}

func (r *trustResolver) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	if len(q.Question) == 1 {
		name := q.Question[0].Name
		r.mu.Lock()
		r.asked[dns.CanonicalName(name)]++
		r.mu.Unlock()
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   net.ParseIP(publicAddr).To4(),
			}}
		}
	}
	w.WriteMsg(m)
}

// askedAbout returns how many times the resolver was asked about name.
func (r *trustResolver) askedAbout(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[dns.CanonicalName(name)]
}

func (r *trustResolver) close() {
	r.srv.Shutdown()
	<-r.done
}
