package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// The flow pipeline. Every flow, whatever its source (a client on the
// overlay, a LAN device at a listener, a client of another site whose
// gateway relayed its packets here), goes through the same stages, each
// in one place:
//
//	classify  source -> identity, destination -> service   classify.go (a function per kind of source)
//	decide    the policy's verdict; audit mode              decide.go (judge)
//	admit     the [limits] caps; the flow table; flow.*     admit, below; flows.go; flowaudit.go
//	dial      a backend here, the service's site, or the    dial, below; backend.go;
//	          console (an in-process pipe)                  webconsole.go
//	accept    complete the client's side                    the source's clientSide
//	splice    copy both ways until either side ends         splice.go (TCP), udp.go (datagrams)
//	end       release what the flow held; flow.end          serve, below
//
// A flow from a client here to another site's service leaves after admit:
// its packets are relayed, not terminated (relay.go). A new kind of source
// writes a classify function and a clientSide, and nothing else.

// clientSide is how a flow talks to the side it came from.
type clientSide interface {
	// refuse says no to the client: the flow was denied or capped, or its
	// backend could not be reached (a TCP reset, or nothing for UDP).
	refuse()
	// accept completes the client's side once the backend is connected.
	accept() (net.Conn, error)
	// abandon makes a pending accept return at once: a client that does
	// not complete its handshake must not hold the backend.
	abandon()
}

// handshakeWait bounds how long an allowed flow whose backend accepted
// waits for the client to complete its TCP handshake; a variable for
// tests.
var handshakeWait = 5 * time.Second

// admit refuses a flow the verdict or a cap refuses, or registers it as
// live, holding its share of the caps; either way it is logged, before
// the client hears of it, so that whoever sees a refusal finds its record
// (and its count in the metrics). serve must follow an admitted flow.
func (g *Gateway) admit(v verdict, cs clientSide) *flow {
	if !v.pass {
		g.logDecision(v, nil, "")
		cs.refuse()
		return nil
	}
	if lim := g.limits.acquire(v.id.Name, kindOf(v.proto)); lim != limitNone {
		g.logCapped(v, lim)
		cs.refuse()
		return nil
	}
	g.flowsWG.Add(1)
	f := g.newFlow(v)
	g.logDecision(v, f, "")
	return f
}

// kindOf is the cap a flow terminated here counts against.
func kindOf(p policy.Proto) flowKind {
	if p == policy.ProtoUDP {
		return kindUDP
	}
	return kindTCP
}

// serve runs an admitted flow to its end: dial the backend before
// completing the client (so that a dead backend looks dead to the client
// too), splice, and release what the flow held.
func (g *Gateway) serve(v verdict, f *flow, cs clientSide) {
	kind := kindOf(v.proto)
	defer g.flowsWG.Done()
	defer g.limits.releaseFlow(v.id.Name, kind)
	// A TCP flow counts as pending (pending_per_identity) until its client
	// is accepted.
	setupDone := sync.OnceFunc(func() {
		if kind == kindTCP {
			g.limits.releasePending(v.id.Name)
		}
	})
	defer setupDone()
	defer g.removeFlow(f)
	defer g.recoverFlow(v, f)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.conns.add(ctxCloser{cancel})
	backend, err := g.dial(ctx, v)
	if err != nil {
		setupDone()
		cs.refuse()
		g.logEnd(f, err.Error())
		return
	}
	f.conns.add(backend)
	// A client that never completes its handshake (a half-open scan) must
	// not hold the backend connection: it is closed after handshakeWait.
	giveUp := time.AfterFunc(handshakeWait, func() {
		backend.Close()
		cs.abandon()
	})
	client, err := cs.accept()
	setupDone()
	if !giveUp.Stop() {
		if client != nil {
			client.Close()
		}
		g.logEnd(f, "the client did not complete its handshake")
		return
	}
	if err != nil {
		backend.Close()
		g.logEnd(f, "accept: "+err.Error())
		return
	}
	f.conns.add(client)

	if v.proto == policy.ProtoUDP {
		idle := newIdleTimer(g.udpIdle(v.dst.Port()), f.stop)
		spliceDatagrams(client, backend, f, idle)
		idle.stop()
		// A UDP flow has no end of its own: it idles out. Only a
		// revocation is worth saying.
		reason := ""
		if f.revoked.Load() {
			reason = "revoked"
		}
		g.logEnd(f, reason)
		return
	}
	idle := newIdleTimer(g.cfg.Limits.TCPIdle, f.stop)
	err = spliceTCP(client, backend, &f.bytesIn, &f.bytesOut, idle)
	idle.stop()
	client.Close()
	backend.Close()
	g.logEnd(f, endReason(f, err))
}

// dial connects an admitted flow to its service: the built-in console, a
// local backend, or the service's own site from the client's own overlay
// address (a LAN
// device's flow, or a client's that was not relayed as packets), so that
// the site identifies the client and decides again.
func (g *Gateway) dial(ctx context.Context, v verdict) (net.Conn, error) {
	if isConsole(v) {
		return g.dialConsole(v)
	}
	if g.isRemote(v) {
		if !g.links.up(v.svc.Site) {
			return nil, errSiteDown(v.svc.Site)
		}
		if v.proto == policy.ProtoUDP {
			return g.overlay.DialUDPFrom(v.src, v.dst)
		}
		ctx, cancel := context.WithTimeout(ctx, g.cfg.Limits.DialTimeout)
		defer cancel()
		c, err := g.overlay.DialTCPFrom(ctx, v.src, v.dst)
		if err != nil && strings.Contains(err.Error(), "port is in use") {
			// The device's source port is still held by its previous
			// flow (gVisor's TIME_WAIT): any port will do.
			c, err = g.overlay.DialTCPFrom(ctx, netip.AddrPortFrom(v.src.Addr(), 0), v.dst)
		}
		return c, err
	}
	addrs := g.backends(v.svc, v.dst, v.proto)
	if v.proto == policy.ProtoUDP {
		if len(addrs) == 0 {
			return nil, errNoBackend
		}
		// A UDP "dial" only picks a route; failover needs a reply timeout
		// that only the application knows, so the first endpoint in the
		// round-robin order serves the flow.
		return net.Dial("udp", addrs[0].String())
	}
	return g.dialTCP(ctx, addrs)
}

// endReason is the error text of a TCP flow's flow.end: why it ended,
// when it was not a clean close.
func endReason(f *flow, err error) string {
	switch {
	case f.revoked.Load():
		return "revoked"
	case f.conns.isStopped():
		return "stopped"
	case err != nil:
		return err.Error()
	}
	return ""
}

// ctxCloser lets a flow's stop cancel a dial in progress.
type ctxCloser struct{ cancel context.CancelFunc }

func (c ctxCloser) Close() error { c.cancel(); return nil }

// recoverFlow turns a panic in one flow into a log line: the flow ends
// (its sockets closed), the gateway goes on.
func (g *Gateway) recoverFlow(v verdict, f *flow) {
	if p := recover(); p != nil {
		f.stop()
		g.log.Error("panic in flow handler; flow ended", slog.Any("panic", p),
			slog.String("src", v.src.String()), slog.String("dst", v.dst.String()),
			slog.String("stack", string(debug.Stack())))
	}
}

// errClientGone is accept's error when the overlay could not set up the
// client's side of a UDP flow.
var errClientGone = errors.New("the overlay could not set up the flow")
