package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Reload reads gateway.toml and the policy again. Load, validate, run the
// [[test]]s and compile first; only then swap atomically. A bad file changes
// nothing (config.error is logged and the error returned). A good one takes
// effect for new flows at once, updates WireGuard peers without disturbing
// unchanged ones, and ends live flows the new policy denies (flow.revoked).
//
// Settings that shape sockets (listen, private key, limits) take effect on
// restart; a reload that changes them says so in the operational log.
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.reopenAudit() // after logrotate, even when the new config is refused
	st, err := g.loadState()
	if err != nil {
		return g.refuseReload(err)
	}
	if err := g.dns.ReloadBlocklists(g.cfg.paths(st.cfg.DNS.Blocklists)); err != nil {
		return g.refuseReload(err)
	}
	peers, err := peersFor(st)
	if err == nil {
		err = g.overlay.SetPeers(peers)
	}
	if err != nil {
		return g.refuseReload(fmt.Errorf("peers: %w", err))
	}
	old := g.state.Swap(st)
	g.links.update(st)
	revoked := g.revoke(st)
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventConfigReload,
		slog.String("policy", st.pol.File()), slog.String("hash", st.pol.Hash()),
		slog.String("previous_hash", old.pol.Hash()), slog.Int("revoked", revoked))
	g.metrics.reloads.WithLabelValues("ok").Inc()
	g.log.Info("reloaded", "hash", st.pol.Hash(), "peers", len(peers), "revoked", revoked)
	return nil
}

// refuseReload logs a reload that changed nothing and returns its error.
func (g *Gateway) refuseReload(err error) error {
	g.metrics.reloads.WithLabelValues("error").Inc()
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventConfigError, slog.String("error", err.Error()))
	g.log.Error("reload refused; the running policy stays", "err", err)
	return err
}

// loadState builds the state a reload would install, or says why not.
func (g *Gateway) loadState() (*state, error) {
	cfg, err := LoadConfig(g.cfg.File())
	if err != nil {
		return nil, err
	}
	if cfg.Site != g.cfg.Site {
		return nil, fmt.Errorf("%s: site changed from %q to %q: restart the gateway to change its site", cfg.File(), g.cfg.Site, cfg.Site)
	}
	if cfg.Listen != g.cfg.Listen || cfg.PrivateKeyFile != g.cfg.PrivateKeyFile || cfg.Limits != g.cfg.Limits {
		g.log.Warn("listen, private_key_file and [limits] changes take effect on restart")
	}
	pol, err := cfg.LoadPolicy()
	if err != nil {
		return nil, err
	}
	if failed := failedTests(pol); failed != "" {
		return nil, fmt.Errorf("%s: policy tests fail: %s", pol.File(), failed)
	}
	g.auditing.Store(cfg.Auditing())
	return &state{pol: pol, site: pol.Site(cfg.Site), cfg: cfg, loadedAt: time.Now()}, nil
}

// failedTests lists the policy's failing [[test]]s, "" when all pass.
func failedTests(p *policy.Policy) string {
	var out []string
	for _, r := range p.RunTests() {
		if !r.Passed {
			out = append(out, fmt.Sprintf("%s (%s -> %s: expected %s, got %s)", r.Problem.Error(), r.From, r.To, r.Expect, r.Got.Verdict))
		}
	}
	return strings.Join(out, "; ")
}

// revoke decides every live flow again with st and ends those it no
// longer lets through, each with flow.revoked.
func (g *Gateway) revoke(st *state) int {
	n := 0
	for _, f := range g.flows.snapshot() {
		ff := &f.fields
		id := st.pol.Identity(ff.identity)
		svc := st.pol.Service(ff.service)
		v := verdict{id: id, svc: svc, src: ff.src, dst: ff.dst, proto: ff.proto, fromSite: ff.fromSite}
		v.d = st.pol.Decide(id, svc, ff.dst.Port(), ff.proto, g.now())
		if g.passes(v) {
			continue
		}
		f.revoked.Store(true)
		f.conns.abortAll()
		n++
		g.logRevoked(f, v.d)
	}
	return n
}
