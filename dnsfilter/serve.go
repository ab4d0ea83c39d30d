package dnsfilter

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Serve answers DNS on pc (UDP) and l (TCP), either of which may be nil,
// until ctx is done or a server fails. It closes pc and l before it
// returns, and returns nil when ctx ended it.
func (f *Filter) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	var servers []*dns.Server
	if pc != nil {
		servers = append(servers, f.udpServer(pc))
	}
	if l != nil {
		servers = append(servers, &dns.Server{Listener: &tcpListener{Listener: l, f: f, open: make(map[string]int)}, Handler: f,
			ReadTimeout: f.cfg.Timeout, IdleTimeout: func() time.Duration { return f.cfg.TCPIdleTimeout }})
	}
	if len(servers) == 0 {
		return errors.New("dnsfilter: Serve: no listener")
	}
	errc := make(chan error, len(servers))
	started := make([]chan struct{}, len(servers))
	exited := make([]chan struct{}, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		started[i], exited[i] = make(chan struct{}), make(chan struct{})
		s.NotifyStartedFunc = func() { close(started[i]) }
		wg.Go(func() {
			defer close(exited[i])
			errc <- s.ActivateAndServe()
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err == nil {
			err = errors.New("dnsfilter: DNS server stopped")
		}
	}
	for i, s := range servers {
		select {
		case <-started[i]:
			s.Shutdown()
		case <-exited[i]: // failed before it started; nothing to stop
		}
	}
	wg.Wait()
	if pc != nil {
		pc.Close()
	}
	if l != nil {
		l.Close()
	}
	return err
}

// tcpListener admits DNS-over-TCP connections by identity: a connection
// from an unknown source, or one more than TCPPerIdentity from the same
// identity, is closed as soon as it is accepted, so that one peer's idle
// connections cannot take the server from the others. The server closes
// a connection whose first query does not come within Timeout, or that is
// idle for TCPIdleTimeout after a query.
type tcpListener struct {
	net.Listener
	f *Filter

	mu   sync.Mutex
	open map[string]int // by identity name
}

func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if name, ok := l.admit(c.RemoteAddr()); ok {
			return &tcpConn{Conn: c, release: func() { l.release(name) }}, nil
		}
		c.Close()
	}
}

// admit counts a connection from remote against its identity, or reports
// that it must be closed.
func (l *tcpListener) admit(remote net.Addr) (string, bool) {
	view := l.f.view()
	a, ok := addrOf(remote)
	if view == nil || !ok {
		return "", false
	}
	id := view.IdentityByAddr(a)
	if id == nil {
		l.f.cfg.Logger.Debug("dns tcp connection from unknown source", "src", remote)
		return "", false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[id.Name] >= l.f.cfg.TCPPerIdentity {
		l.f.cfg.Logger.Debug("dns tcp connections per identity reached", "identity", id.Name, "limit", l.f.cfg.TCPPerIdentity)
		return "", false
	}
	l.open[id.Name]++
	return id.Name, true
}

func (l *tcpListener) release(name string) {
	l.mu.Lock()
	if l.open[name]--; l.open[name] <= 0 {
		delete(l.open, name)
	}
	l.mu.Unlock()
}

// tcpConn gives its identity's slot back when it is first closed.
type tcpConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *tcpConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
