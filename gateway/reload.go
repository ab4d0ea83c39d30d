package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/dnsfilter"
	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/internal/wgkey"
)

// Reload reads gateway.toml and the policy again. Everything the new
// configuration needs is built first: the config, the policy (loaded,
// validated, its [[test]]s run), the blocklists and the peer set. Only then
// is anything changed, in one place: peers, the state swap, blocklists,
// the enforce mode, site links. A refused reload changes nothing at all
// (config.error is logged and the error returned); a good one takes effect
// for new flows at once, updates WireGuard peers without disturbing
// unchanged ones, ends live flows the new policy denies (flow.revoked), and
// reports what changed.
//
// Settings that shape sockets and servers made at start (listen, limits,
// listeners, ...) take effect on restart; a reload that changes them says
// so in the operational log, and the new state's config keeps their
// running values, so that it is the one config in force.
func (g *Gateway) Reload() (ReloadChanges, error) { return g.reload(nil) }

// reload is Reload with, when the policy follows a repository, the new
// commit to apply (nil: the running one).
func (g *Gateway) reload(next *policysource.Commit) (ReloadChanges, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.reopenAudit() // after logrotate, even when the new config is refused
	refuse := func(err error) (ReloadChanges, error) { return ReloadChanges{}, g.refuseReload(err, next) }
	st, err := g.loadState(next)
	if err != nil {
		return refuse(err)
	}
	blocks, err := dnsfilter.LoadBlocklists(st.cfg.paths(st.cfg.DNS.Blocklists))
	if err != nil {
		return refuse(err)
	}
	dnsSettings, err := dnsfilter.CompileSettings(g.dnsConfig(st.cfg))
	if err != nil {
		return refuse(fmt.Errorf("%s: [dns]: %w", st.cfg.File(), err))
	}
	peers, err := peersFor(st)
	if err != nil {
		return refuse(fmt.Errorf("peers: %w", err))
	}
	prev := g.state.Load()
	if st.key != prev.key {
		// A gateway key rotation (docs/operating.md): every session ends.
		if err := g.overlay.SetPrivateKey(st.key); err != nil {
			return refuse(err)
		}
	}
	if err := g.overlay.SetPeers(peers); err != nil {
		if st.key != prev.key {
			g.overlay.SetPrivateKey(prev.key)
		}
		return refuse(fmt.Errorf("peers: %w", err))
	}
	// From here on nothing can fail: the new state is in force.
	old := g.state.Swap(st)
	if next != nil {
		g.follow.applied(next)
	}
	g.dns.SetBlocklists(blocks)
	g.dns.SetSettings(dnsSettings)
	g.auditing.Store(st.cfg.Auditing())
	g.links.update(st)
	ch := changes(old, st)
	ch.KeyChanged = st.key != old.key
	ch.Revoked = g.revoke(st)
	g.logReload(ch)
	g.reportQuarantineOrphans(st)
	g.metrics.reloads.WithLabelValues("ok").Inc()
	return ch, nil
}

// ReloadChanges is what a reload changed, for the audit log, the
// operational log and `wardgate reload`.
type ReloadChanges struct {
	PolicyHash      string `json:"policy_hash"`
	PreviousHash    string `json:"previous_hash"`
	Enforce         string `json:"enforce"`
	PreviousEnforce string `json:"previous_enforce"`
	// Commit and PreviousCommit: the policy source's commits, when the
	// policy follows a repository.
	Commit         string   `json:"commit,omitempty"`
	PreviousCommit string   `json:"previous_commit,omitempty"`
	PeersAdded     []string `json:"peers_added,omitempty"`
	PeersRemoved   []string `json:"peers_removed,omitempty"`
	// KeyChanged: private_key_file now holds another key; every WireGuard
	// session was ended and peers handshake with the new public key.
	KeyChanged bool `json:"key_changed,omitempty"`
	Revoked    int  `json:"revoked"`
}

// changes compares the state before and after a reload (Revoked is set by
// the caller).
func changes(old, st *state) ReloadChanges {
	ch := ReloadChanges{
		PolicyHash: st.pol.Hash(), PreviousHash: old.pol.Hash(),
		Enforce: st.cfg.Enforce, PreviousEnforce: old.cfg.Enforce,
		Commit: st.commit, PreviousCommit: old.commit,
	}
	before, after := peerNames(old), peerNames(st)
	for k, name := range after {
		if _, ok := before[k]; !ok {
			ch.PeersAdded = append(ch.PeersAdded, name)
		}
	}
	for k, name := range before {
		if _, ok := after[k]; !ok {
			ch.PeersRemoved = append(ch.PeersRemoved, name)
		}
	}
	slices.Sort(ch.PeersAdded)
	slices.Sort(ch.PeersRemoved)
	return ch
}

// peerNames names this site's WireGuard peers by key: its identities and
// the other sites.
func peerNames(st *state) map[wgkey.Public]string {
	m := make(map[wgkey.Public]string)
	for _, id := range st.pol.Identities() {
		if !id.IsLAN() && id.Site == st.site.Name {
			m[id.Key] = id.Name
		}
	}
	for _, s := range st.pol.Sites() {
		if s.Name != st.site.Name {
			m[s.Key] = "site " + s.Name
		}
	}
	return m
}

// logReload writes config.reload, and config.enforce when the enforce mode
// changed: turning enforcement off must leave a trail.
func (g *Gateway) logReload(ch ReloadChanges) {
	ctx := context.Background()
	if ch.Enforce != ch.PreviousEnforce {
		g.audit.LogAttrs(ctx, slog.LevelInfo, EventConfigEnforce,
			slog.String("enforce", ch.Enforce), slog.String("previous_enforce", ch.PreviousEnforce))
		if ch.Enforce == "audit" {
			g.log.Warn("AUDIT MODE: this gateway is NOT ENFORCING policy from now on; would-be denials are let through and logged as flow.audit")
		} else {
			g.log.Info("enforcing policy again", "previous", ch.PreviousEnforce)
		}
	}
	attrs := []slog.Attr{
		slog.String("policy", g.state.Load().pol.File()), slog.String("hash", ch.PolicyHash),
		slog.String("previous_hash", ch.PreviousHash), slog.String("enforce", ch.Enforce),
		slog.Any("peers_added", ch.PeersAdded), slog.Any("peers_removed", ch.PeersRemoved),
		slog.Bool("key_changed", ch.KeyChanged), slog.Int("revoked", ch.Revoked),
	}
	if ch.Commit != "" {
		attrs = append(attrs, slog.String("previous_commit", ch.PreviousCommit))
		attrs = append(attrs, commitAttrs(g.follow.current())...)
	}
	g.audit.LogAttrs(ctx, slog.LevelInfo, EventConfigReload, attrs...)
	if ch.KeyChanged {
		g.log.Warn("the gateway's WireGuard key changed: every session ended; peers need the new public key")
	}
	g.log.Info("reloaded", "hash", ch.PolicyHash, "commit", ch.Commit, "enforce", ch.Enforce,
		"peers_added", len(ch.PeersAdded), "peers_removed", len(ch.PeersRemoved), "revoked", ch.Revoked)
}

// refuseReload logs a reload that changed nothing and returns its error;
// next is the refused commit of the policy source, if any.
func (g *Gateway) refuseReload(err error, next *policysource.Commit) error {
	g.metrics.reloads.WithLabelValues("error").Inc()
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, EventConfigError,
		append(commitAttrs(next), slog.String("error", err.Error()))...)
	if next != nil {
		g.log.Error("policy commit refused; the running policy stays", "commit", next.Hash, "err", err)
		return err
	}
	g.log.Error("reload refused; the running policy stays", "err", err)
	return err
}

// loadState builds the state a reload would install, or says why not.
func (g *Gateway) loadState(next *policysource.Commit) (*state, error) {
	cfg, err := LoadConfig(g.cfg.File())
	if err != nil {
		return nil, err
	}
	if cfg.Site != g.cfg.Site {
		return nil, fmt.Errorf("%s: site changed from %q to %q: restart the gateway to change its site", cfg.File(), g.cfg.Site, cfg.Site)
	}
	if later := restartOnly(g.cfg, cfg); len(later) > 0 {
		g.log.Warn("these changes take effect on restart; the running values stay", "settings", strings.Join(later, ", "))
	}
	keepRestartOnly(g.cfg, cfg)
	pol, commit, err := g.policyFor(cfg, next)
	if err != nil {
		return nil, err
	}
	key, err := cfg.ReadPrivateKey()
	if err != nil {
		return nil, err
	}
	st := &state{pol: pol, site: pol.Site(cfg.Site), cfg: cfg, key: key, loadedAt: time.Now(), commit: commit}
	return st, st.checkKey()
}

// restartOnly lists the settings that changed from old to cfg and that a
// reload does not apply: they shape sockets and servers made at start.
// What a reload applies (the policy, enforce, [dns] but rate_per_identity,
// peers, the key) is read from the new state; keepRestartOnly gives
// everything else the values of start.
func restartOnly(old, cfg *Config) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, name)
		}
	}
	add(cfg.Listen != old.Listen, "listen")
	add(cfg.StateDir != old.StateDir, "state_dir")
	add(cfg.DNS.RatePerIdentity != old.DNS.RatePerIdentity, "[dns] rate_per_identity")
	add(cfg.Admin != old.Admin, "[admin]")
	add(cfg.Log != old.Log, "[log]")
	add(cfg.Limits != old.Limits, "[limits]")
	add(!slices.Equal(cfg.Listener, old.Listener), "[[listener]]")
	add(cfg.PolicySource != old.PolicySource, "[policy_source]")
	return out
}

// keepRestartOnly sets in cfg the running values (old's) of the settings
// restartOnly names.
func keepRestartOnly(old, cfg *Config) {
	cfg.Listen, cfg.StateDir = old.Listen, old.StateDir
	cfg.DNS.RatePerIdentity = old.DNS.RatePerIdentity
	cfg.Admin, cfg.Log, cfg.Limits = old.Admin, old.Log, old.Limits
	cfg.Listener = old.Listener
}

// checkKey refuses a private key whose public key is not this site's key in
// the policy: such a gateway would start, and then complete no handshake
// with anyone.
func (st *state) checkKey() error {
	if pub := st.key.Public(); pub != st.site.Key {
		return fmt.Errorf("%s: private_key_file %s belongs to public key %s, but site %q has key %s in %s",
			st.cfg.File(), st.cfg.PrivateKeyFile, pub, st.site.Name, st.site.Key, st.pol.File())
	}
	return nil
}

// revoke decides every live flow again with st and ends those it no
// longer lets through, each with flow.revoked.
func (g *Gateway) revoke(st *state) int {
	n := 0
	for _, f := range g.flows.snapshot() {
		ff := &f.fields
		id := st.pol.Identity(ff.identity)
		svc := st.pol.Service(ff.service)
		v := g.judge(st, verdict{id: id, svc: svc, src: ff.src, dst: ff.dst, proto: ff.proto, fromSite: ff.fromSite})
		if v.pass {
			continue
		}
		f.revoked.Store(true)
		f.conns.abortAll()
		n++
		g.logRevoked(f, v.d)
	}
	return n
}
