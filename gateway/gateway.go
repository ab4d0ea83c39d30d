// Package gateway wires wardgate together: gateway.toml, the flow handler
// (identify, decide, dial, splice), the audit log, limits, and the
// lifecycle of a running gateway. Protocol details live in overlay (WireGuard
// and the network stack), policy (decisions) and dnsfilter (DNS).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/wardgate/wardgate/dnsfilter"
	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// Options are what a caller (the CLI, a test, the demo) supplies beyond the
// config files.
type Options struct {
	// Bind is the WireGuard UDP transport; nil means real UDP sockets on
	// the config's listen port.
	Bind conn.Bind
	// Audit receives the audit log; nil means the config's [log] audit.
	Audit *slog.Logger
	// Logger is the operational log; nil means text on stderr at the
	// config's level.
	Logger *slog.Logger
	// Now is the clock used for time-window decisions; nil is time.Now.
	Now func() time.Time
	// Version is the build's version, for the gateway.start audit event.
	Version string
}

// Gateway is a running wardgate gateway.
type Gateway struct {
	// cfg is the config the gateway started with, read for what only a
	// restart changes (see restartOnly); a reload carries those values
	// into the new state's config, so the two agree on them. What a
	// reload changes is read from the state.
	cfg      *Config
	auditing atomic.Bool // enforce = "audit": would-be denials pass
	audit    *slog.Logger
	log      *slog.Logger
	now      func() time.Time
	closers  []io.Closer // opened by Start, closed by Close (audit file)
	auditOut *auditSink  // the audit file or stdout; nil with Options.Audit

	state   atomic.Pointer[state]
	overlay *overlay.Overlay
	limits  *flowLimits
	capped  capDenials // cap refusals, logged as counts past a budget
	flows   *flowTable
	rr      roundRobin
	// dns answers on the overlay address, port 53; its FQDN egress table
	// is how the flow handler matches destinations learnt from DNS.
	links     *siteLinks
	listeners []io.Closer // LAN [[listener]] sockets
	admin     *adminServer
	console   *consoleHost // the web console (webconsole.go)
	metrics   *metrics
	// stopWatch ends the handshake watcher and the flow recheck;
	// watchDone and recheckDone say they have.
	stopWatch   chan struct{}
	watchDone   chan struct{}
	recheckDone chan struct{}
	dns         *dnsfilter.Filter
	dnsStop     context.CancelFunc
	dnsDone     chan struct{}
	// egress, when set, finds the egress service an identity may reach at
	// an address it learnt from DNS (dnsfilter's FQDN egress).
	egress func(id *policy.Identity, dst netip.Addr, port uint16, proto policy.Proto) *policy.Service
	// quar is the set of quarantined identities (quarantine.go).
	quar *quarantines

	// follow keeps the policy on a git branch's head ([policy_source]).
	follow *follower

	version  string
	closing  atomic.Bool
	flowsWG  sync.WaitGroup
	reloadMu sync.Mutex
	closeMu  sync.Mutex
	closed   bool
}

// Start loads the policy the config names, brings up the WireGuard device
// and the stack, and starts serving flows. With no valid policy it returns
// an error: the gateway never runs open.
func Start(cfg *Config, opts Options) (*Gateway, error) {
	g := &Gateway{cfg: cfg, now: opts.Now, log: opts.Logger, audit: opts.Audit}
	g.auditing.Store(cfg.Auditing())
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		// Repeated lines about one source collapse into a count: a flood
		// must not flood the operational log too.
		g.log = slog.New(newRepeatFilter(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(cfg.Log.Level)})))
	}
	if g.audit == nil {
		w, err := g.openAudit()
		if err != nil {
			return nil, err
		}
		g.audit = NewAuditLogger(w)
	}
	if err := g.start(opts); err != nil {
		g.teardown()
		return nil, err
	}
	st := g.state.Load()
	g.version = opts.Version
	attrs := []slog.Attr{slog.String("site", st.site.Name), slog.String("version", g.version),
		slog.String("policy", st.pol.File()), slog.String("hash", st.pol.Hash())}
	if st.commit != "" {
		attrs = append(attrs, slog.String("commit", st.commit))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventGatewayStart, append(attrs, slog.String("enforce", cfg.Enforce))...)
	g.log.Info("wardgate running", "site", st.site.Name, "address", st.site.Address,
		"port", g.overlay.Port(), "policy", st.pol.File(), "hash", st.pol.Hash())
	if g.auditing.Load() {
		g.log.Warn("AUDIT MODE: this gateway is NOT ENFORCING policy; would-be denials are let through and logged as flow.audit")
	}
	return g, nil
}

// start brings the parts up in order; on error, teardown undoes whatever
// started.
func (g *Gateway) start(opts Options) error {
	cfg := g.cfg
	g.metrics = g.newMetrics() // counts a commit refused at start
	pol, commit, err := g.firstPolicy(cfg)
	if err != nil {
		return err
	}
	key, err := cfg.ReadPrivateKey()
	if err != nil {
		return err
	}
	st := &state{pol: pol, site: pol.Site(cfg.Site), cfg: cfg, key: key, loadedAt: time.Now(), commit: commit}
	if err := st.checkKey(); err != nil {
		return err
	}
	g.state.Store(st)
	if err := g.loadQuarantine(); err != nil {
		return err
	}
	g.limits = newFlowLimits(limitCaps{
		flowsPerIdentity: cfg.Limits.FlowsPerIdentity, pendingPerIdentity: cfg.Limits.PendingPerIdentity,
		flowsTotal: cfg.Limits.FlowsTotal, udpFlowsTotal: cfg.Limits.UDPFlowsTotal,
	})
	g.flows = newFlowTable()

	listen, _ := netip.ParseAddrPort(cfg.Listen) // validated by ParseConfig
	bind := opts.Bind
	if bind == nil && !listen.Addr().IsUnspecified() {
		// Listen on that address only, as the operator wrote.
		bind = overlay.NewAddrBind(listen.Addr())
	}
	g.overlay, err = overlay.New(overlay.Config{
		PrivateKey: key,
		Bind:       bind,
		ListenPort: listen.Port(),
		Address:    st.site.Address,
		TCP:        overlay.TCPConfig{MaxInFlight: cfg.Limits.PendingTotal},
		HeapBudget: uint64(cfg.Limits.MemoryMiB) << 20,
		Handler: overlay.Handler{
			TCP:   g.handleTCP,
			UDP:   g.admitUDP,
			Ping:  g.allowPing,
			Route: g.routeFlow,
		},
		Logger: g.log,
	})
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if err := g.startDNS(); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	// Before the peers: a flow to the console needs it, and its pages
	// read the overlay.
	if err := g.startConsole(); err != nil {
		return fmt.Errorf("web console: %w", err)
	}
	peers, err := peersFor(st)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	restored := restoreEndpoints(peers, g.loadPeerEndpoints())
	if err := g.overlay.SetPeers(peers); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	if len(restored) > 0 {
		g.overlay.Knock(restored...)
		g.log.Info("handshakes started with the clients of the last run", "peers", len(restored))
	}
	if err := g.startSiteLinks(); err != nil {
		return fmt.Errorf("site links: %w", err)
	}
	g.stopWatch, g.watchDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(g.watchDone)
		g.watchHandshakes(g.stopWatch)
	}()
	g.recheckDone = make(chan struct{})
	go func() {
		defer close(g.recheckDone)
		g.recheckFlows(g.stopWatch)
	}()
	startTrim(g.log)
	if err := g.startListeners(); err != nil {
		return err
	}
	if err := g.startAdmin(); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if err := g.startMetrics(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if g.follow != nil {
		g.follow.start()
	}
	return nil
}

// teardown stops whatever parts are running, in reverse order.
func (g *Gateway) teardown() {
	if g.follow != nil {
		g.follow.close()
	}
	g.stopMetrics()
	g.stopAdmin()
	for _, l := range g.listeners {
		l.Close()
	}
	if g.stopWatch != nil {
		close(g.stopWatch)
		<-g.watchDone
		<-g.recheckDone
		stopTrim()
		g.stopWatch = nil
	}
	if g.links != nil {
		g.links.close()
	}
	g.stopDNS()
	if g.overlay != nil {
		g.overlay.Close()
	}
	g.stopConsole()
	g.closeAll()
}

// Port is the WireGuard UDP port the gateway listens on.
func (g *Gateway) Port() uint16 { return g.overlay.Port() }

// Policy returns the policy in force.
func (g *Gateway) Policy() *policy.Policy { return g.state.Load().pol }

// Flows lists the live flows.
func (g *Gateway) Flows() []FlowInfo {
	fs := g.flows.snapshot()
	out := make([]FlowInfo, len(fs))
	for i, f := range fs {
		out[i] = f.info()
	}
	return out
}

// Close stops the gateway: new flows are refused at once, live flows get up
// to [limits] drain to finish, then the rest are ended and the device goes
// down.
func (g *Gateway) Close() error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	g.closing.Store(true)
	g.stopConsole() // its pages' connections would hold the drain open
	done := make(chan struct{})
	go func() { g.flowsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(g.cfg.Limits.Drain):
		n := g.flows.len()
		g.log.Info("drain time over; ending live flows", "flows", n)
		for _, f := range g.flows.snapshot() {
			f.stop()
		}
		<-done
	}
	if err := g.savePeerEndpoints(g.overlay.Peers()); err != nil {
		g.log.Warn("peer endpoints not saved; after a restart clients reconnect on their own", "err", err)
	}
	st := g.state.Load()
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventGatewayStop,
		slog.String("site", st.site.Name), slog.String("version", g.version), slog.String("hash", st.pol.Hash()))
	g.teardown()
	return nil
}

// allowPing answers ICMP echo to a service VIP only for identities that may
// reach that service.
func (g *Gateway) allowPing(src, dst netip.Addr) bool {
	st := g.state.Load()
	id := st.pol.IdentityByAddr(src)
	if id == nil {
		return false
	}
	svc := st.pol.ServiceByDst(netip.AddrPortFrom(dst, 0), policy.ProtoICMP)
	if svc == nil || svc.VIP != dst || !st.pol.CanReach(id, svc) || g.quarantineHides(st, id, svc) {
		return false
	}
	// The home gateway answers for another site's service only while that
	// site is up: a ping should not say "reachable" when flows are refused.
	return svc.Site == "" || svc.Site == st.site.Name || g.links.up(svc.Site)
}

// peersFor is the WireGuard peer set of this site: every identity homed
// here, with its overlay address as AllowedIPs, and every other site's
// gateway, with the addresses it answers for (policy.SiteRoutes: its own,
// its identities', its services' VIPs and endpoints). Cryptokey routing
// then binds each source address to one key, and sends each destination
// to the one site that serves it.
func peersFor(st *state) ([]overlay.Peer, error) {
	var peers []overlay.Peer
	for _, id := range st.pol.Identities() {
		if id.IsLAN() || id.Site != st.site.Name {
			continue
		}
		peers = append(peers, overlay.Peer{
			PublicKey:  id.Key,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(id.Address, id.Address.BitLen())},
		})
	}
	for _, s := range st.pol.Sites() {
		if s.Name == st.site.Name {
			continue
		}
		p := overlay.Peer{
			PublicKey:           s.Key,
			AllowedIPs:          st.pol.SiteRoutes(s.Name),
			PersistentKeepalive: siteKeepalive,
		}
		if s.Endpoint != "" {
			ep, err := resolveEndpoint(s.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("site %q endpoint: %w", s.Name, err)
			}
			p.Endpoint = ep
		}
		peers = append(peers, p)
	}
	return peers, nil
}

// siteKeepalive keeps gateway-to-gateway sessions warm, and makes a
// gateway that starts initiate its handshakes to the other sites at once.
const siteKeepalive = 25 * time.Second

// resolveEndpoint turns host:port into an address, resolving names once.
func resolveEndpoint(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ua.AddrPort(), nil
}

func (g *Gateway) closeAll() {
	for _, c := range g.closers {
		c.Close()
	}
	g.closers = nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Serve runs until ctx is done, then closes the gateway.
func (g *Gateway) Serve(ctx context.Context) error {
	<-ctx.Done()
	return g.Close()
}

func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
