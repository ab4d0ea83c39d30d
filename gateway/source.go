package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/policy"
)

// A gateway with [policy_source] follows a branch of a git repository. At
// start it fetches the branch and runs its head; when the head is refused
// (signature, history, or the policy fails to load, validate or pass its
// [[test]]s), or the repository cannot be reached, it runs the last good
// commit kept in state_dir, and with none it does not start: a gateway
// never runs open. Then, every poll, a new head is applied exactly as a
// reload applies a policy (the same build-then-swap, the same revocation of
// live flows), or refused with config.error naming the commit; a refused
// head is not tried again, the next commit is.

// startFetchTimeout bounds the fetch at start: an unreachable repository
// must not keep a gateway with a good cached policy from serving.
const startFetchTimeout = 15 * time.Second

// follower keeps a gateway on the newest good commit of its policy source.
type follower struct {
	g    *Gateway
	src  *policysource.Source
	cfg  PolicySourceConfig // the repository's URL without its token
	stop chan struct{}
	done chan struct{} // nil until start
	// ctx ends with stop, so that a fetch in progress does not hold up
	// Close.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below.
	mu        sync.Mutex
	running   *policysource.Commit // in force
	head      string               // the branch head at the last good fetch
	lastFetch time.Time            // the last good fetch
	fetchErr  string               // the last fetch's error; "" after a good one
	offline   bool                 // running the cache, repository not reached since start
	refused   string               // the newest head refused
	refusedAt string               // why
	// refusedUnder is the gateway.toml in force when refused was: a
	// reload (a fixed gateway.toml) makes the head worth trying again.
	refusedUnder *Config
	fetches      [2]uint64 // good, failed
	// unsaved: the commit running was chosen at start and goes to the
	// cache once the gateway is up.
	unsaved bool
}

// firstPolicy loads the policy a gateway starts with: the local file, or,
// following a repository, its head or the cached last good commit.
func (g *Gateway) firstPolicy(cfg *Config) (*policy.Policy, string, error) {
	if !cfg.FollowsRepo() {
		p, err := cfg.LoadPolicy()
		return p, "", err
	}
	src, err := cfg.policySource(filepath.Join(cfg.stateDir(), sourceCloneDir))
	if err != nil {
		return nil, "", err
	}
	shown := cfg.PolicySource
	shown.Repo = policysource.Redact(shown.Repo)
	f := &follower{g: g, src: src, cfg: shown, stop: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	defer func() {
		if g.follow == nil {
			f.cancel()
		}
	}()
	cached := g.loadSourceCache(cfg)
	ctx, cancel := context.WithTimeout(f.ctx, startFetchTimeout)
	head, ferr := f.fetch(ctx)
	cancel()
	if ferr == nil && (cached == nil || head != cached.Hash) {
		// A head not run before: start on it if it passes, else on the
		// cache.
		c, err := src.Read(head, cachedHash(cached))
		var p *policy.Policy
		if err == nil {
			p, err = cfg.startPolicy(c)
		}
		if err == nil {
			f.running, f.unsaved = c, true
			g.follow = f
			return p, c.Hash, nil
		}
		f.refuse(head, err, cfg)
		if cached == nil {
			return nil, "", fmt.Errorf("no good policy to start with: the head of %s (%s) is refused and state_dir holds no earlier good commit; the gateway does not start open: %w",
				shown.Repo, policysource.Short(head), err)
		}
	}
	// The cache: the head is the cached commit, or was refused, or the
	// repository did not answer.
	if cached == nil {
		return nil, "", fmt.Errorf("policy source unreachable and no cached policy in %s: the gateway does not start open: %w", cfg.stateDir(), ferr)
	}
	p, err := cfg.startPolicy(cached)
	if err != nil {
		return nil, "", fmt.Errorf("the cached policy (commit %s) in %s: %w", policysource.Short(cached.Hash), cfg.stateDir(), err)
	}
	f.running = cached
	if ferr != nil {
		f.offline = true
		g.log.Error("POLICY SOURCE UNREACHABLE: running the last good policy kept in state_dir until the repository answers",
			"repo", shown.Repo, "commit", cached.Hash, "err", ferr)
	}
	g.follow = f
	return p, cached.Hash, nil
}

func cachedHash(c *policysource.Commit) string {
	if c == nil {
		return ""
	}
	return c.Hash
}

// commitPolicy loads, validates and tests a commit's policy file against
// this config. Its messages name the file as path@commit.
func (c *Config) commitPolicy(cm *policysource.Commit) (*policy.Policy, error) {
	name := c.PolicySource.Path + "@" + policysource.Short(cm.Hash)
	p, err := policy.Parse(name, cm.Data)
	if err != nil {
		return nil, err
	}
	return c.vetPolicy(p)
}

// startPolicy is commitPolicy plus the check that the private key is this
// site's in the commit: a head that rotates the key before the gateway has
// the new one is refused at start like at reload, and the cached commit
// runs instead.
func (c *Config) startPolicy(cm *policysource.Commit) (*policy.Policy, error) {
	p, err := c.commitPolicy(cm)
	if err != nil {
		return nil, err
	}
	key, err := c.ReadPrivateKey()
	if err != nil {
		return nil, err
	}
	st := &state{pol: p, site: p.Site(c.Site), cfg: c, key: key}
	return p, st.checkKey()
}

// policyFor is the policy a reload installs: next when a new commit is
// being applied, else the running commit again (gateway.toml may have
// changed) or the local file.
func (g *Gateway) policyFor(cfg *Config, next *policysource.Commit) (*policy.Policy, string, error) {
	switch {
	case cfg.FollowsRepo() != (g.follow != nil):
		return nil, "", fmt.Errorf("%s: switching between `policy` and [policy_source] takes a restart", cfg.File())
	case !cfg.FollowsRepo():
		p, err := cfg.LoadPolicy()
		return p, "", err
	}
	if next == nil {
		next = g.follow.current()
	}
	p, err := cfg.commitPolicy(next)
	return p, next.Hash, err
}

// start keeps the commit the gateway started with, if new, and polls the
// repository until close.
func (f *follower) start() {
	if f.unsaved {
		f.g.saveSourceCache(f.g.cfg, f.running)
	}
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		t := time.NewTicker(f.cfg.Poll)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				f.poll()
			}
		}
	}()
}

func (f *follower) close() {
	f.cancel()
	close(f.stop)
	if f.done != nil {
		<-f.done
	}
}

// poll fetches and applies a new head.
func (f *follower) poll() {
	ctx, cancel := context.WithTimeout(f.ctx, max(f.cfg.Poll, startFetchTimeout))
	head, err := f.fetch(ctx)
	cancel()
	if err != nil {
		return
	}
	under := f.g.state.Load().cfg
	f.mu.Lock()
	running := f.running.Hash
	tried := head == f.refused && under == f.refusedUnder
	f.mu.Unlock()
	if head == running || tried {
		return
	}
	c, err := f.src.Read(head, running)
	if err != nil {
		f.refuse(head, err, under)
		return
	}
	if _, err := f.g.reload(c); err != nil {
		f.markRefused(head, err, under) // reload logged config.error
		return
	}
	f.g.saveSourceCache(f.g.cfg, c)
}

// fetch fetches the branch and records the outcome: a failure is logged
// when the repository stops answering, not at every poll.
func (f *follower) fetch(ctx context.Context) (string, error) {
	head, err := f.src.Fetch(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return "", err // stopping
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.fetches[1]++
		if f.fetchErr == "" {
			f.g.log.Warn("policy source unreachable; the running policy stays", "repo", f.cfg.Repo, "err", err)
		}
		f.fetchErr = err.Error()
		return "", err
	}
	f.fetches[0]++
	if f.fetchErr != "" || f.offline {
		f.g.log.Info("policy source reachable again", "repo", f.cfg.Repo, "head", head)
	}
	f.head, f.lastFetch, f.fetchErr, f.offline = head, time.Now(), "", false
	return head, nil
}

// refuse logs a commit that is not applied and remembers it, so that it
// is not tried again under the same gateway.toml.
func (f *follower) refuse(head string, err error, under *Config) {
	f.markRefused(head, err, under)
	f.g.refuseReload(err, &policysource.Commit{Hash: head})
}

func (f *follower) markRefused(head string, err error, under *Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused, f.refusedAt, f.refusedUnder = head, err.Error(), under
}

// applied records c as the commit in force; reload calls it as it swaps
// the state, so that a reload for another reason reads the same commit.
func (f *follower) applied(c *policysource.Commit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = c
}

func (f *follower) current() *policysource.Commit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

// commitAttrs are the audit attributes of a commit: what makes a change
// attributable.
func commitAttrs(c *policysource.Commit) []slog.Attr {
	if c == nil {
		return nil
	}
	attrs := []slog.Attr{slog.String("commit", c.Hash)}
	for _, kv := range [][2]string{{"author", c.Author}, {"subject", c.Subject}, {"signer", c.Signer}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	return attrs
}
