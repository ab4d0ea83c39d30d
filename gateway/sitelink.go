package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Site links carry flows between gateways over the overlay. Each gateway
// serves HTTP/2 (cleartext: the WireGuard tunnel is the encryption and the
// peer authentication) on its overlay address, port SiteLinkPort; a flow to
// a service homed at another site is one CONNECT stream on the one HTTP/2
// connection between the two gateways:
//
//	CONNECT  :authority = SERVICE
//	Wardgate-Identity, Wardgate-Service, Wardgate-Port, Wardgate-Proto,
//	Wardgate-Flow, Wardgate-Policy-Hash, Wardgate-Src
//
// The receiving gateway believes the identity only because the connection
// comes from a configured site gateway's overlay address (WireGuard binds it
// to that site's key), and only for identities homed at that site. It
// decides again with its own policy, never relays onward to a third site,
// and answers 200 (then the stream is the flow), 403 (denied: Wardgate-Reason,
// Wardgate-Rule) or 502 (its backend refused). UDP datagrams travel on the
// stream with a two-byte length before each.

// SiteLinkPort is the TCP port of the site-link listener on every gateway's
// overlay address.
const SiteLinkPort = 4443

// Site-link header names.
const (
	hdrIdentity = "Wardgate-Identity"
	hdrService  = "Wardgate-Service"
	hdrPort     = "Wardgate-Port"
	hdrProto    = "Wardgate-Proto"
	hdrFlow     = "Wardgate-Flow"
	hdrHash     = "Wardgate-Policy-Hash"
	hdrSrc      = "Wardgate-Src"
	hdrReason   = "Wardgate-Reason"
	hdrRule     = "Wardgate-Rule"
)

// Site-link timing: how fast a dead site is noticed and how soon it is
// tried again.
const (
	linkDialTimeout = 3 * time.Second
	linkProbeEvery  = 5 * time.Second
	linkRetryDown   = time.Second
)

// errSiteDown is returned at once for flows to a site whose link is down,
// so that clients see a refusal, not a hang; the prober notices recovery.
var errSiteDown = errors.New("site link down")

// linkHTTP2 tunes HTTP/2 for bulk flows between gateways: large frames and
// windows (the defaults, 16 KiB frames and 4 MiB per stream, cost CPU per
// byte and cap a flow at high round-trip times), and pings that find a
// vanished peer.
func linkHTTP2() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxReadFrameSize:              1 << 20,
		MaxReceiveBufferPerStream:     8 << 20,
		MaxReceiveBufferPerConnection: 64 << 20,
		SendPingTimeout:               10 * time.Second,
		PingTimeout:                   5 * time.Second,
	}
}

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// siteLinks is this gateway's side of the mesh: one link per other site,
// and the listener for the others.
type siteLinks struct {
	g *Gateway

	srv *http.Server
	ln  net.Listener

	// mu guards links.
	mu    sync.Mutex
	links map[string]*siteLink

	stop chan struct{}
	done sync.WaitGroup
	// ctx ends with close, so a probe in progress does not hold up a stop.
	ctx    context.Context
	cancel context.CancelFunc
}

// siteLink is the client side of the link to one other site.
type siteLink struct {
	name string
	addr netip.AddrPort
	tr   *http.Transport
	log  *slog.Logger

	// mu guards the health fields.
	mu         sync.Mutex
	healthy    bool
	checked    time.Time
	lastErr    string
	remoteHash string
	warnedHash string // the mismatching hash already logged
}

func (g *Gateway) startSiteLinks() error {
	ln, err := g.overlay.ListenTCP(SiteLinkPort)
	if err != nil {
		return err
	}
	sl := &siteLinks{g: g, ln: ln, links: make(map[string]*siteLink), stop: make(chan struct{})}
	sl.ctx, sl.cancel = context.WithCancel(context.Background())
	sl.srv = &http.Server{
		Handler:           http.HandlerFunc(sl.serveHTTP),
		Protocols:         h2cOnly(),
		ReadHeaderTimeout: 10 * time.Second,
		HTTP2:             linkHTTP2(),
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	g.links = sl
	sl.update(g.state.Load())
	sl.done.Add(2)
	go func() {
		defer sl.done.Done()
		sl.srv.Serve(&siteOnlyListener{Listener: ln, g: g})
	}()
	go func() {
		defer sl.done.Done()
		sl.probeLoop()
	}()
	return nil
}

// close stops the listener, the prober and every link.
func (sl *siteLinks) close() {
	sl.cancel()
	close(sl.stop)
	sl.srv.Close()
	sl.done.Wait()
	sl.mu.Lock()
	for _, l := range sl.links {
		l.tr.CloseIdleConnections()
	}
	sl.mu.Unlock()
}

// update makes the links match the policy's sites (after start and reload):
// new sites get a link, gone sites lose theirs, a site whose address moved
// gets a new one.
func (sl *siteLinks) update(st *state) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	want := make(map[string]bool)
	for _, s := range st.pol.Sites() {
		if s.Name == st.site.Name {
			continue
		}
		want[s.Name] = true
		addr := netip.AddrPortFrom(s.Address, SiteLinkPort)
		if l := sl.links[s.Name]; l != nil && l.addr == addr {
			continue
		} else if l != nil {
			l.tr.CloseIdleConnections()
		}
		sl.links[s.Name] = sl.newLink(s.Name, addr)
	}
	for name, l := range sl.links {
		if !want[name] {
			l.tr.CloseIdleConnections()
			delete(sl.links, name)
		}
	}
}

func (sl *siteLinks) newLink(name string, addr netip.AddrPort) *siteLink {
	l := &siteLink{name: name, addr: addr, log: sl.g.log} // down until the first probe answers
	l.tr = &http.Transport{
		Protocols: h2cOnly(),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, linkDialTimeout)
			defer cancel()
			return sl.g.overlay.DialTCP(ctx, addr)
		},
		HTTP2:           linkHTTP2(),
		MaxConnsPerHost: 1, // one connection carries every flow
	}
	return l
}

func (sl *siteLinks) link(site string) *siteLink {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.links[site]
}

// probeLoop checks every link's health: often while it is down, so flows
// recover soon after the site comes back, and now and then while it is up,
// to learn the other gateway's policy hash.
func (sl *siteLinks) probeLoop() {
	t := time.NewTicker(linkRetryDown)
	defer t.Stop()
	for {
		sl.mu.Lock()
		links := make([]*siteLink, 0, len(sl.links))
		for _, l := range sl.links {
			links = append(links, l)
		}
		sl.mu.Unlock()
		for _, l := range links {
			l.mu.Lock()
			due := !l.healthy || time.Since(l.checked) >= linkProbeEvery
			l.mu.Unlock()
			if due {
				sl.probe(l)
			}
		}
		select {
		case <-sl.stop:
			return
		case <-t.C:
		}
	}
}

// probe asks the other gateway for its policy hash.
func (sl *siteLinks) probe(l *siteLink) {
	ctx, cancel := context.WithTimeout(sl.ctx, linkDialTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.addr.String()+"/v1/health", nil)
	req.Header.Set(hdrHash, sl.g.state.Load().pol.Hash())
	resp, err := l.tr.RoundTrip(req)
	if err != nil {
		if sl.ctx.Err() == nil { // not stopping
			l.markDown(err)
		}
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.markUp(sl.g.state.Load().pol.Hash(), resp.Header.Get(hdrHash))
}

func (l *siteLink) markDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.healthy || l.checked.IsZero() {
		l.log.Warn("site link down; flows to its services are refused until it is back", "site", l.name, "err", err)
	}
	l.healthy, l.checked, l.lastErr = false, time.Now(), err.Error()
	// The connection that failed may linger in the pool, half dead; the
	// next exchange must start afresh (a restarted site knows nothing of it).
	l.tr.CloseIdleConnections()
}

// markUp records a good exchange on this link and the other gateway's
// policy hash.
func (l *siteLink) markUp(ours, theirs string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.healthy {
		l.log.Info("site link up", "site", l.name)
	}
	l.healthy, l.checked, l.lastErr = true, time.Now(), ""
	l.sawHashLocked(ours, theirs)
}

// sawHash records the other gateway's policy hash, from any exchange (its
// requests to us included, which say nothing about our way to it). A hash
// that differs from ours is logged once per peer and hash.
func (l *siteLink) sawHash(ours, theirs string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sawHashLocked(ours, theirs)
}

func (l *siteLink) sawHashLocked(ours, theirs string) {
	if theirs == "" {
		return
	}
	l.remoteHash = theirs
	if theirs != ours && theirs != l.warnedHash {
		l.warnedHash = theirs
		l.log.Warn("site gateway runs a different policy", "site", l.name, "their_hash", theirs, "our_hash", ours)
	}
}

func (l *siteLink) isHealthy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.healthy
}

// linkStatus reports the site links for status.
func (g *Gateway) linkStatus(st *state) []LinkStatus {
	if g.links == nil {
		return nil
	}
	var out []LinkStatus
	for _, s := range st.pol.Sites() {
		l := g.links.link(s.Name)
		if l == nil {
			continue
		}
		l.mu.Lock()
		out = append(out, LinkStatus{
			Site: l.name, Address: l.addr.Addr().String(), Healthy: l.healthy,
			PolicyHash: l.remoteHash, SameHash: l.remoteHash == st.pol.Hash(),
			LastError: l.lastErr, CheckedAt: l.checked,
		})
		l.mu.Unlock()
	}
	return out
}

// relayError is a refusal by the other site, with its reason.
type relayError struct {
	site, reason, rule string
	status             int
}

func (e *relayError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("site %s refused: %s", e.site, e.reason)
	}
	return fmt.Sprintf("site %s answered %d", e.site, e.status)
}

// dialSite opens a flow to svc at its home site over the site link and
// returns the stream once the other gateway has decided and its backend
// accepted.
func (g *Gateway) dialSite(ctx context.Context, f *flow, svc *policy.Service) (net.Conn, error) {
	l := g.links.link(svc.Site)
	if l == nil {
		return nil, fmt.Errorf("site %q: no link", svc.Site)
	}
	if !l.isHealthy() {
		return nil, fmt.Errorf("site %s: %w", svc.Site, errSiteDown)
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "http://"+l.addr.String(), pr)
	req.Host = svc.Name
	h := req.Header
	h.Set(hdrIdentity, f.identity)
	h.Set(hdrService, svc.Name)
	h.Set(hdrPort, strconv.Itoa(int(f.port)))
	h.Set(hdrProto, f.proto.String())
	h.Set(hdrFlow, f.id)
	h.Set(hdrSrc, f.src.String())
	ours := g.state.Load().pol.Hash()
	h.Set(hdrHash, ours)
	resp, err := l.tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		l.markDown(err)
		return nil, fmt.Errorf("site %s: %w", svc.Site, err)
	}
	l.markUp(ours, resp.Header.Get(hdrHash))
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		return nil, &relayError{site: svc.Site, status: resp.StatusCode, reason: resp.Header.Get(hdrReason), rule: resp.Header.Get(hdrRule)}
	}
	sc := &streamConn{w: pw, r: resp.Body, local: f.src, remote: l.addr}
	if f.proto == policy.ProtoTCP {
		sc.r = &frameReader{r: resp.Body}
	}
	return sc, nil
}

// siteOnlyListener accepts only connections from configured site gateways
// (other than this one): any other peer gets nothing, not even an HTTP
// error.
type siteOnlyListener struct {
	net.Listener
	g *Gateway
}

func (l *siteOnlyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if site := l.g.remoteSite(c.RemoteAddr()); site != nil {
			return c, nil
		}
		l.g.log.Warn("site-link connection from a peer that is not a site gateway; closed", "src", c.RemoteAddr())
		c.Close()
	}
}

// remoteSite maps a site-link peer address to another site of the policy.
func (g *Gateway) remoteSite(a net.Addr) *policy.Site {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return nil
	}
	st := g.state.Load()
	s := st.pol.SiteByAddr(ta.AddrPort().Addr().Unmap())
	if s == nil || s.Name == st.site.Name {
		return nil
	}
	return s
}

// serveHTTP is the receiving side of a site link.
func (sl *siteLinks) serveHTTP(w http.ResponseWriter, r *http.Request) {
	g := sl.g
	from := g.remoteSite(remoteAddr(r))
	if from == nil { // the listener let it through, but a reload removed the site
		http.Error(w, "not a site gateway", http.StatusForbidden)
		return
	}
	st := g.state.Load()
	w.Header().Set(hdrHash, st.pol.Hash())
	if l := sl.link(from.Name); l != nil {
		l.sawHash(st.pol.Hash(), r.Header.Get(hdrHash))
	}
	if r.Method == http.MethodGet && r.URL.Path == "/v1/health" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodConnect {
		http.Error(w, "want CONNECT", http.StatusMethodNotAllowed)
		return
	}
	g.serveRelayed(w, r, st, from)
}

func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// serveRelayed decides a flow another site relayed, with this gateway's own
// policy, and serves it from a local backend.
func (g *Gateway) serveRelayed(w http.ResponseWriter, r *http.Request, st *state, from *policy.Site) {
	h := r.Header
	port, _ := strconv.ParseUint(h.Get(hdrPort), 10, 16)
	proto := policy.ProtoTCP
	if h.Get(hdrProto) == "udp" {
		proto = policy.ProtoUDP
	}
	src, _ := netip.ParseAddrPort(h.Get(hdrSrc))
	v := verdict{src: src, proto: proto, flowID: h.Get(hdrFlow), fromSite: from.Name}
	// Believe the identity only for identities homed at the relaying site.
	if id := st.pol.Identity(h.Get(hdrIdentity)); id != nil && id.Site == from.Name {
		v.id = id
	}
	svc := st.pol.Service(h.Get(hdrService))
	if v.id != nil && svc != nil && svc.Site == st.site.Name && svc.VIP.IsValid() {
		v.svc = svc
		v.dst = netip.AddrPortFrom(svc.VIP, uint16(port))
	}
	v.d = st.pol.Decide(v.id, v.svc, uint16(port), proto, g.now())
	v.pass = g.passes(v)
	refuse := func(status int, reason string) {
		w.Header().Set(hdrReason, reason)
		if v.d.Rule != "" {
			w.Header().Set(hdrRule, v.d.Rule)
		}
		w.WriteHeader(status)
	}
	accept := func() (net.Conn, error) {
		w.WriteHeader(http.StatusOK)
		if err := http.NewResponseController(w).Flush(); err != nil {
			return nil, err
		}
		sc := &streamConn{w: flushWriter{w}, r: r.Body, local: v.dst, remote: src}
		if proto == policy.ProtoTCP {
			sc.w = &frameWriter{w: flushWriter{w}}
		}
		return sc, nil
	}
	deny := func(reason string) { refuse(http.StatusForbidden, reason) }
	if proto == policy.ProtoUDP {
		g.serveRelayedUDP(v, deny, accept)
		return
	}
	g.serveTCP(v, clientSide{deny: deny, fail: func() { refuse(http.StatusBadGateway, "backend refused") }, accept: accept})
}

// streamConn is one site-link stream as a net.Conn: writes go to the
// request (or response) body, reads come from the other one. CloseWrite
// ends our direction only (END_STREAM), as TCP half-close does.
type streamConn struct {
	w             io.WriteCloser
	r             io.ReadCloser
	local, remote netip.AddrPort
	closeOnce     sync.Once
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *streamConn) CloseWrite() error           { return c.w.Close() }
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.w.Close()
		if fr, ok := c.r.(*frameReader); ok && fr.sawEOF {
			// A clean end: the other gateway sent its end-of-stream frame
			// and ends the stream as its handler returns. Closing the body
			// now would cancel the stream under it (and its flow.end would
			// report the cancel), so let the end arrive, briefly.
			t := time.AfterFunc(drainTimeout, func() { c.r.Close() })
			go func() {
				io.Copy(io.Discard, fr.r)
				t.Stop()
				c.r.Close()
			}()
			return
		}
		c.r.Close()
	})
	return nil
}

// drainTimeout bounds how long a cleanly ended stream waits for the other
// gateway to end it before it is cancelled.
const drainTimeout = 5 * time.Second

func (c *streamConn) LocalAddr() net.Addr                { return net.TCPAddrFromAddrPort(c.local) }
func (c *streamConn) RemoteAddr() net.Addr               { return net.TCPAddrFromAddrPort(c.remote) }
func (c *streamConn) SetDeadline(t time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return nil }

// flushWriter sends every write on a response stream at once; closing it
// has nothing to close: the handler returning ends the stream.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = http.NewResponseController(f.w).Flush()
	}
	return n, err
}

func (f flushWriter) Close() error { return nil }
