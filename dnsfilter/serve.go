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
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: f, UDPSize: dns.DefaultMsgSize})
	}
	if l != nil {
		servers = append(servers, &dns.Server{Listener: l, Handler: f,
			ReadTimeout: f.cfg.Timeout, IdleTimeout: func() time.Duration { return 10 * time.Second }})
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
