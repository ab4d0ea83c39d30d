package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/console"
	"github.com/wardgate/wardgate/policy"
)

// The web console (package console) is served twice: on the overlay, as the
// built-in service policy.ConsoleService at this gateway's own address,
// port 80, where each connection is a flow decided, audited and counted
// like any other and whose backend is an in-process pipe to the console's
// HTTP server; and, when [admin] web is set, on a loopback address for the
// gateway host itself.

// consoleHost runs the console's HTTP servers.
type consoleHost struct {
	feed    *console.Feed
	overlay *http.Server
	pipes   *pipeListener
	web     *http.Server // [admin] web; nil when not set
	webAddr netip.AddrPort
	done    sync.WaitGroup
}

// recentDecisions is how many decisions the gateway keeps for the live
// page, which shows the newest 200 that pass its filter.
const recentDecisions = 500

// startConsole starts the overlay console, and the loopback one when
// configured. It needs no overlay listener: flows reach it through
// dialConsole.
func (g *Gateway) startConsole() error {
	h := console.New(consoleSource{g}, g.now)
	c := &consoleHost{feed: console.NewFeed(recentDecisions), pipes: newPipeListener()}
	c.overlay = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			if vc, ok := conn.(viewerConn); ok {
				return console.WithViewer(ctx, vc.identity)
			}
			return ctx
		}}
	g.console = c
	c.serve(g, c.overlay, c.pipes, "overlay")
	if addr := g.cfg.Admin.Web; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		c.webAddr = ln.Addr().(*net.TCPAddr).AddrPort()
		c.web = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		c.serve(g, c.web, ln, addr)
		g.log.Info("web console listening", "address", ln.Addr().String())
	}
	return nil
}

func (c *consoleHost) serve(g *Gateway, srv *http.Server, ln net.Listener, where string) {
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("web console stopped", "on", where, "err", err)
		}
	}()
}

// stopConsole closes both servers and ends every console flow.
func (g *Gateway) stopConsole() {
	c := g.console
	if c == nil {
		return
	}
	c.overlay.Close()
	if c.web != nil {
		c.web.Close()
	}
	c.done.Wait()
	// The server's side is closed; a client that keeps its own side open
	// (a live page) would keep the flow open until the drain ends.
	for _, f := range g.flows.snapshot() {
		if f.fields.service == policy.ConsoleService {
			f.stop()
		}
	}
}

// WebAddr is the loopback address the console listens on ([admin] web),
// or the zero value.
func (g *Gateway) WebAddr() netip.AddrPort {
	if g.console == nil {
		return netip.AddrPort{}
	}
	return g.console.webAddr
}

// consoleService matches a TCP flow to this gateway's own address, port
// 80, to the built-in console service.
func consoleService(st *state, dst netip.AddrPort, proto policy.Proto) *policy.Service {
	if proto == policy.ProtoTCP && dst.Port() == policy.ConsolePort && dst.Addr().Unmap() == st.site.Address {
		return st.pol.Console()
	}
	return nil
}

// isConsole reports whether v is a flow to the console. Such a flow is never
// let through as a would-be denial: audit mode is for rolling out rules
// between clients and services, not for showing the segmentation map to
// everyone.
func isConsole(v verdict) bool { return v.svc != nil && v.svc.Name == policy.ConsoleService }

// dialConsole is an allowed console flow's backend: one end of a pipe whose
// other end the console's HTTP server accepts, knowing who is asking.
func (g *Gateway) dialConsole(v verdict) (net.Conn, error) {
	client, server := net.Pipe()
	if !g.console.pipes.deliver(viewerConn{Conn: server, identity: v.id.Name}) {
		client.Close()
		server.Close()
		return nil, errors.New("the console is stopped")
	}
	return client, nil
}

// publishDecision passes a logged decision to the console's live page.
func (g *Gateway) publishDecision(v verdict, event, reason string) {
	if g.console == nil {
		return
	}
	d := console.Decision{Time: g.now(), Verdict: "allow", Src: v.src, Dst: v.dst, Proto: v.proto.String(), Rule: v.d.Rule, Reason: reason}
	switch event {
	case EventFlowDeny:
		d.Verdict = "deny"
	case EventFlowAudit:
		d.Verdict = "audit"
	}
	if v.id != nil {
		d.Identity = v.id.Name
	}
	if v.svc != nil {
		d.Service = v.svc.Name
	}
	g.console.feed.Publish(d)
}

// viewerConn is a console connection from the overlay, with the identity
// it came from.
type viewerConn struct {
	net.Conn
	identity string
}

// pipeListener is a net.Listener whose connections are handed to it in
// process.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// deliver hands c to Accept; false once the listener is closed.
func (l *pipeListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "console" }
