package dnsfilter

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// UDP admission. miekg/dns starts a goroutine for every datagram, and every
// answer, a REFUSED included, is written through the one overlay UDP
// endpoint. A flood of queries therefore turns into an unbounded pile of
// goroutines queued on that endpoint, and DNS stops for everyone. So the
// datagrams are admitted before any work is done for them:
//
//   - at most maxUDPInflight queries are being answered at once; a datagram
//     over that is dropped, as a full socket buffer would drop it;
//   - a source sending more than floodFactor times its rate limit (the
//     rate limiter inside answers REFUSED up to there) has the excess
//     dropped without an answer: answering a flood is work for the server
//     and amplification for the sender.
//
// Dropped datagrams are counted (Stats.Dropped).

const (
	maxUDPInflight = 512
	floodFactor    = 4
	// maxFloodSources bounds the per-source table; past it, the table
	// starts afresh (sources are overlay peers, so it is rarely reached).
	maxFloodSources = 16384
)

// udpAdmission is the admission state of one UDP server.
type udpAdmission struct {
	inflight atomic.Int32
	dropped  *atomic.Uint64
	rate     float64 // tokens per second per source
	burst    float64

	mu      sync.Mutex
	sources map[netip.Addr]*tokenBucket
	now     func() time.Time
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newUDPAdmission(f *Filter) *udpAdmission {
	return &udpAdmission{
		dropped: &f.stats.dropped,
		rate:    floodFactor * f.cfg.RatePerIdentity,
		burst:   floodFactor * float64(f.cfg.Burst),
		sources: make(map[netip.Addr]*tokenBucket),
		now:     f.now,
	}
}

// admit takes a slot for a datagram from addr, or says to drop it.
func (a *udpAdmission) admit(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || !a.withinRate(ua.AddrPort().Addr().Unmap()) {
		a.dropped.Add(1)
		return false
	}
	if a.inflight.Add(1) > maxUDPInflight {
		a.inflight.Add(-1)
		a.dropped.Add(1)
		return false
	}
	return true
}

// release gives back the slot of an admitted datagram, once it has been
// answered, rejected or found invalid.
func (a *udpAdmission) release() { a.inflight.Add(-1) }

func (a *udpAdmission) withinRate(src netip.Addr) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.sources[src]
	if b == nil {
		if len(a.sources) >= maxFloodSources {
			a.sources = make(map[netip.Addr]*tokenBucket)
		}
		b = &tokenBucket{tokens: a.burst, last: now}
		a.sources[src] = b
	}
	b.tokens = min(a.burst, b.tokens+now.Sub(b.last).Seconds()*a.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// udpServer is the UDP DNS server with admission: the reader admits (or
// drops) each datagram; the slot is released when the handler returns, or
// when miekg/dns rejects the message or finds it invalid without calling
// the handler. Each admitted datagram takes exactly one of those paths.
func (f *Filter) udpServer(pc net.PacketConn) *dns.Server {
	a := newUDPAdmission(f)
	return &dns.Server{
		PacketConn: pc,
		UDPSize:    dns.DefaultMsgSize,
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			defer a.release()
			f.ServeDNS(w, r)
		}),
		DecorateReader: func(r dns.Reader) dns.Reader { return admitReader{r.(dns.PacketConnReader), a} },
		MsgAcceptFunc: func(dh dns.Header) dns.MsgAcceptAction {
			action := dns.DefaultMsgAcceptFunc(dh)
			if action != dns.MsgAccept {
				a.release()
			}
			return action
		},
		MsgInvalidFunc: func([]byte, error) { a.release() },
	}
}

// admitReader reads datagrams and passes on only those admitted.
type admitReader struct {
	dns.PacketConnReader
	a *udpAdmission
}

func (r admitReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	for {
		m, addr, err := r.PacketConnReader.ReadPacketConn(conn, timeout)
		if err != nil || r.a.admit(addr) {
			return m, addr, err
		}
	}
}

// ReadUDP is the same for a host UDP socket (miekg/dns reads those with
// their session for the reply's source address).
func (r admitReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, s, err := r.PacketConnReader.ReadUDP(conn, timeout)
		if err != nil || r.a.admit(s.RemoteAddr()) {
			return m, s, err
		}
	}
}
