package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// clientSide is how a TCP flow talks to the side it came from: the overlay
// (a SYN waiting for SYN-ACK or RST, from a client here or relayed by
// another site) or a LAN listener (an accepted socket).
type clientSide struct {
	deny   func(reason string)      // refused by policy or a cap, nothing dialed
	fail   func()                   // allowed, but the backend refused
	accept func() (net.Conn, error) // the backend accepted: complete the client
	// abandon makes a pending accept return at once (a client that does
	// not complete its handshake); nil when accept does not wait.
	abandon func()
}

// handshakeWait bounds how long an allowed flow whose backend accepted
// waits for the client to complete its TCP handshake; a variable for
// tests.
var handshakeWait = 5 * time.Second

// handleTCP decides a new TCP connection from the overlay and, when it is
// allowed, dials the backend before completing the client's handshake, so
// that a dead backend looks dead to the client too.
func (g *Gateway) handleTCP(r *overlay.TCPRequest) {
	if g.closing.Load() {
		r.Reject()
		return
	}
	v := g.decide(g.state.Load(), r.Src, r.Dst, policy.ProtoTCP)
	if reason := g.unrelayed(v); reason != "" {
		r.Reject()
		g.logDecision(v, nil, reason)
		return
	}
	g.serveTCP(v, clientSide{deny: func(string) { r.Reject() }, fail: r.Reject, accept: r.Accept, abandon: r.Abandon})
}

// serveTCP runs one TCP flow whose verdict is made: refuse, or dial the
// backend (here or at the service's site), complete the client and splice.
func (g *Gateway) serveTCP(v verdict, cs clientSide) {
	if !v.pass {
		cs.deny(v.d.Reason.String())
		g.logDecision(v, nil, "")
		return
	}
	if lim := g.limits.acquire(v.id.Name, kindTCP); lim != limitNone {
		cs.deny(string(lim))
		g.logCapped(v, lim)
		return
	}
	setupDone := sync.OnceFunc(func() { g.limits.releasePending(v.id.Name) })
	defer setupDone()
	g.flowsWG.Add(1)
	defer g.flowsWG.Done()
	defer g.limits.releaseFlow(v.id.Name, kindTCP)

	f := g.newFlow(v)
	defer g.removeFlow(f)
	defer g.recoverFlow(v, f)
	g.logDecision(v, f, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.conns.add(ctxCloser{cancel})

	backend, err := g.dialFlow(ctx, v, f)
	if err != nil {
		setupDone()
		cs.fail()
		g.logEnd(f, err.Error())
		return
	}
	f.conns.add(backend)
	// The client's handshake completes only now. A client that never sends
	// its ACK (a half-open scan) must not hold the backend connection: it
	// is closed after handshakeWait, and until accept returns the flow
	// still counts against the identity's pending limit.
	giveUp := time.AfterFunc(handshakeWait, func() {
		backend.Close()
		if cs.abandon != nil {
			cs.abandon()
		}
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

	idle := newIdleTimer(g.cfg.Limits.TCPIdle, f.stop)
	err = spliceTCP(client, backend, &f.bytesIn, &f.bytesOut, idle)
	idle.stop()
	client.Close()
	backend.Close()
	g.logEnd(f, endReason(f, err))
}

// dialFlow connects an allowed flow to its service: a local backend, or the
// service's own site, from the client's own overlay address (a LAN
// device's, or a client's flow that was not relayed), so that the site
// identifies the client and decides again.
func (g *Gateway) dialFlow(ctx context.Context, v verdict, f *flow) (net.Conn, error) {
	if isConsole(v) {
		return g.dialConsole(v)
	}
	if g.isRemote(v) {
		if !g.links.up(v.svc.Site) {
			return nil, errSiteDown(v.svc.Site)
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
	return g.dialTCP(ctx, g.backends(v.svc, v.dst, v.proto))
}

// endReason is the error text of flow.end: why the flow ended, when it was
// not a clean close.
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
