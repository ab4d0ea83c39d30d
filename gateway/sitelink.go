package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Site links are the control channel between gateways: health, the
// policy each one runs, and the quarantine records (quarantine_link.go).
// Flow data never travels on them: a flow to a service at another site is
// relayed as packets over the two gateways' WireGuard session (relay.go).
//
// Each gateway serves HTTP/1.1 on its overlay address, port SiteLinkPort,
// to other sites' gateway addresses only (WireGuard binds those addresses
// to the sites' keys). GET /v1/health answers 204 with the server's policy
// hash in Wardgate-Policy-Hash (or 200 with the quarantine records when the
// caller's differ, quarantine_link.go); the request carries the caller's. Every
// probe is a fresh connection, so a site that restarted is never judged by
// a connection from before its restart. A site whose probe fails is down:
// new flows to its services are refused at once (reason site-down) until a
// probe answers again.

// SiteLinkPort is the TCP port of the control channel on every gateway's
// overlay address.
const SiteLinkPort = 4443

// hdrHash carries the sender's policy hash on every exchange, hdrCommit
// its policy source commit (when it follows a repository).
const (
	hdrHash   = "Wardgate-Policy-Hash"
	hdrCommit = "Wardgate-Policy-Commit"
)

// Probe timing: a dead site is noticed within linkProbeEvery +
// linkProbeTimeout; a site that is down is tried every linkRetryDown.
const (
	linkProbeTimeout = 2 * time.Second
	linkRetryDown    = time.Second
)

// linkProbeEvery is how often a healthy link is probed; a variable so that
// a benchmark running a hundred gateways on one machine's cores can probe
// as a hundred machines would (each gateway probes every other site: the
// load of a process of n gateways grows as n squared).
var linkProbeEvery = 2 * time.Second

// siteLinks is this gateway's side of the mesh: one link per other site,
// and the listener for the others.
type siteLinks struct {
	g  *Gateway
	tr *http.Transport

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

// siteLink is what this gateway knows of one other site's gateway.
type siteLink struct {
	name string
	addr netip.AddrPort
	log  *slog.Logger

	// mu guards the health fields.
	mu           sync.Mutex
	healthy      bool
	checked      time.Time
	lastErr      string
	remoteHash   string
	remoteCommit string
	warnedHash   string // the mismatching hash already logged
}

func (g *Gateway) startSiteLinks() error {
	ln, err := g.overlay.ListenTCP(SiteLinkPort)
	if err != nil {
		return err
	}
	sl := &siteLinks{g: g, ln: ln, links: make(map[string]*siteLink), stop: make(chan struct{})}
	sl.ctx, sl.cancel = context.WithCancel(context.Background())
	sl.tr = &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return g.overlay.DialTCP(ctx, ap)
		},
		DisableKeepAlives: true,
	}
	sl.srv = &http.Server{
		Handler:           http.HandlerFunc(sl.serveHTTP),
		ReadHeaderTimeout: linkProbeTimeout,
		IdleTimeout:       linkProbeTimeout,
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

// close stops the listener and the prober.
func (sl *siteLinks) close() {
	sl.cancel()
	close(sl.stop)
	sl.srv.Close()
	sl.done.Wait()
}

// update makes the links match the policy's sites (after start and reload):
// new sites get a link (down until its first probe), gone sites lose
// theirs, a site whose address moved starts afresh.
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
		}
		sl.links[s.Name] = &siteLink{name: s.Name, addr: addr, log: sl.g.log}
	}
	for name := range sl.links {
		if !want[name] {
			delete(sl.links, name)
		}
	}
}

func (sl *siteLinks) link(site string) *siteLink {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.links[site]
}

// up reports whether site's gateway answered its last probe.
func (sl *siteLinks) up(site string) bool {
	if sl == nil {
		return false
	}
	l := sl.link(site)
	return l != nil && l.isHealthy()
}

// probeLoop checks every link's health: every linkRetryDown while it is
// down, so flows recover soon after the site comes back, and every
// linkProbeEvery while it is up, so flows to a dead site are refused soon.
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
		var wg sync.WaitGroup
		for _, l := range links {
			l.mu.Lock()
			due := !l.healthy || time.Since(l.checked) >= linkProbeEvery-linkRetryDown/2
			l.mu.Unlock()
			if due {
				wg.Add(1)
				go func() { defer wg.Done(); sl.probe(l) }() // a dead site does not delay the others
			}
		}
		wg.Wait()
		select {
		case <-sl.stop:
			return
		case <-t.C:
		}
	}
}

// probe asks the other gateway for its policy hash.
func (sl *siteLinks) probe(l *siteLink) {
	ctx, cancel := context.WithTimeout(sl.ctx, linkProbeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.addr.String()+"/v1/health", nil)
	st := sl.g.state.Load()
	ours := st.pol.Hash()
	req.Header.Set(hdrHash, ours)
	req.Header.Set(hdrQuarantine, sl.g.quarantineHash())
	req.Header.Set(hdrCommit, st.commit)
	resp, err := sl.tr.RoundTrip(req)
	if err != nil {
		if sl.ctx.Err() == nil { // not stopping
			l.markDown(err)
		}
		return
	}
	sl.g.learnQuarantine(l.name, resp) // before the link counts as up
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.markUp(ours, resp.Header.Get(hdrHash))
	l.sawCommit(resp.Header.Get(hdrCommit))
}

// sawCommit records the other gateway's policy source commit.
func (l *siteLink) sawCommit(commit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remoteCommit = commit
}

func (l *siteLink) markDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.healthy || l.checked.IsZero() {
		l.log.Warn("site link down; flows to its services are refused until it is back", "site", l.name, "err", err)
	}
	l.healthy, l.checked, l.lastErr = false, time.Now(), err.Error()
}

// markUp records a good exchange on this link and the other gateway's
// policy hash.
func (l *siteLink) markUp(ours, theirs string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.healthy {
		l.log.Info("site link up; flows to its services are relayed", "site", l.name)
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
			PolicyHash: l.remoteHash, SameHash: l.remoteHash == st.pol.Hash(), PolicyCommit: l.remoteCommit,
			LastError: l.lastErr, CheckedAt: l.checked,
		})
		l.mu.Unlock()
	}
	return out
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

// serveHTTP answers another site's probe.
func (sl *siteLinks) serveHTTP(w http.ResponseWriter, r *http.Request) {
	g := sl.g
	from := g.remoteSite(remoteAddr(r))
	if from == nil { // the listener let it through, but a reload removed the site
		http.Error(w, "not a site gateway", http.StatusForbidden)
		return
	}
	st := g.state.Load()
	w.Header().Set(hdrHash, st.pol.Hash())
	w.Header().Set(hdrCommit, st.commit)
	if l := sl.link(from.Name); l != nil {
		l.sawHash(st.pol.Hash(), r.Header.Get(hdrHash))
		l.sawCommit(r.Header.Get(hdrCommit))
	}
	if r.Method != http.MethodGet || r.URL.Path != "/v1/health" {
		http.NotFound(w, r)
		return
	}
	if g.offerQuarantine(w, r) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// remoteSite maps a control-channel peer address to another site of the
// policy.
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
