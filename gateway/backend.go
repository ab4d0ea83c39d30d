package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// backends picks where an allowed flow is dialed.
//
//   - A flow addressed to a backend's real address (or to an address learnt
//     for an egress service) is dialed there: the client chose it.
//   - A flow to the service's VIP is dialed at every single-address endpoint
//     that offers the port; several are alternatives, spread round-robin and
//     tried in turn when a dial fails. CIDR endpoints name a range of hosts,
//     not one to pick, so they are reachable only by their real addresses.
func (g *Gateway) backends(svc *policy.Service, dst netip.AddrPort, proto policy.Proto) []netip.AddrPort {
	if dst.Addr() != svc.VIP {
		return []netip.AddrPort{dst}
	}
	port := dst.Port()
	var out []netip.AddrPort
	for _, ep := range svc.Endpoints {
		if ep.Prefix.IsSingleIP() && ep.Ports.Contains(port, proto) {
			out = append(out, netip.AddrPortFrom(ep.Prefix.Addr(), port))
		}
	}
	if len(out) > 1 {
		start := int(g.rr.next(svc.Name) % uint64(len(out)))
		out = append(out[start:], out[:start]...)
	}
	return out
}

// roundRobin hands out a rising counter per service.
type roundRobin struct {
	m sync.Map // service name -> *atomic.Uint64
}

func (r *roundRobin) next(service string) uint64 {
	c, ok := r.m.Load(service)
	if !ok {
		c, _ = r.m.LoadOrStore(service, new(atomic.Uint64))
	}
	return c.(*atomic.Uint64).Add(1) - 1
}

var errNoBackend = errors.New("no endpoint offers this port")

// dialTCP dials the first of addrs that accepts, each within the dial
// timeout. The error of the last attempt is returned when none accepts.
func (g *Gateway) dialTCP(ctx context.Context, addrs []netip.AddrPort) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errNoBackend
	}
	d := net.Dialer{
		Timeout: g.cfg.Limits.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: overlay.DefaultKeepAliveIdle, Interval: overlay.DefaultKeepAliveInterval, Count: overlay.DefaultKeepAliveCount,
		},
	}
	var err error
	for _, a := range addrs {
		var c net.Conn
		c, err = d.DialContext(ctx, "tcp", a.String())
		if err == nil {
			return c, nil
		}
		g.log.Debug("backend dial failed", "addr", a, "err", err)
	}
	return nil, fmt.Errorf("dial %v: %w", addrs[len(addrs)-1], err)
}
