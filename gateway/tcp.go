package gateway

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// handleTCP decides a new TCP connection from the overlay and, when it is
// allowed, dials the backend before completing the client's handshake, so
// that a dead backend looks dead to the client too.
func (g *Gateway) handleTCP(r *overlay.TCPRequest) {
	if g.closing.Load() {
		r.Reject()
		return
	}
	v := g.decide(g.state.Load(), r.Src, r.Dst, policy.ProtoTCP)
	g.serveTCP(v, r.Reject, r.Accept)
}

// serveTCP runs one TCP flow whose verdict is made: reject, or dial the
// backend, accept the client and splice. It is shared by the overlay, site
// links and LAN listeners; accept returns the client conn (completing the
// handshake where there is one to complete).
func (g *Gateway) serveTCP(v verdict, reject func(), accept func() (net.Conn, error)) {
	if !v.pass {
		reject()
		g.logDecision(v, "")
		return
	}
	if lim := g.limits.acquire(v.id.Name, true); lim != limitNone {
		reject()
		g.logDecision(v, string(lim))
		return
	}
	g.logDecision(v, "")
	setupDone := sync.OnceFunc(func() { g.limits.releasePending(v.id.Name) })
	defer setupDone()
	g.flowsWG.Add(1)
	defer g.flowsWG.Done()
	defer g.limits.releaseFlow(v.id.Name)
	defer g.recoverFlow(v)

	ctx, cancel := context.WithCancel(context.Background())
	var conns struct {
		sync.Mutex
		c []net.Conn
	}
	stop := func() {
		cancel()
		conns.Lock()
		for _, c := range conns.c {
			c.Close()
		}
		conns.Unlock()
	}
	f := g.newFlow(v, stop)
	defer g.flows.remove(f)
	defer cancel()

	backend, err := g.dialTCP(ctx, g.backends(v.svc, v.dst, v.proto))
	setupDone()
	if err != nil {
		reject()
		g.logEnd(f, err.Error())
		return
	}
	client, err := accept()
	if err != nil {
		backend.Close()
		g.logEnd(f, "accept: "+err.Error())
		return
	}
	conns.Lock()
	conns.c = []net.Conn{client, backend}
	conns.Unlock()
	if ctx.Err() != nil { // stopped while dialing
		stop()
	}

	idle := newIdleTimer(g.cfg.Limits.TCPIdle, stop)
	err = spliceTCP(client, backend, &f.bytesIn, &f.bytesOut, idle)
	idle.stop()
	client.Close()
	backend.Close()
	errText := ""
	switch {
	case f.revoked.Load():
		errText = "revoked"
	case ctx.Err() != nil:
		errText = "stopped"
	case err != nil:
		errText = err.Error()
	}
	g.logEnd(f, errText)
}

// recoverFlow turns a panic in one flow into a log line: the flow ends, the
// gateway goes on.
func (g *Gateway) recoverFlow(v verdict) {
	if p := recover(); p != nil {
		g.log.Error("panic in flow handler; flow ended", slog.Any("panic", p),
			slog.String("src", v.src.String()), slog.String("dst", v.dst.String()),
			slog.String("stack", string(debug.Stack())))
	}
}
