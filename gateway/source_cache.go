package gateway

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/gateway/policysource"
)

// The last good commit of a policy source is kept in the state directory,
// so that a gateway restarted while the repository is unreachable runs the
// policy it ran before (and says so) instead of not starting, and so that
// one restarted with a broken head runs the last good commit instead of
// nothing. The file is written atomically after each applied commit; it is
// as trusted as gateway.toml (state_dir belongs to the gateway's user).

const sourceCacheFile = "policy-source.json"

// sourceCache is policy-source.json.
type sourceCache struct {
	Repo      string    `json:"repo"`
	Branch    string    `json:"branch"`
	Path      string    `json:"path"`
	Commit    string    `json:"commit"`
	Author    string    `json:"author,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Signer    string    `json:"signer,omitempty"`
	When      time.Time `json:"when,omitzero"`
	AppliedAt time.Time `json:"applied_at"`
	Policy    string    `json:"policy"` // the file at Commit
}

// loadSourceCache returns the cached commit of cfg's policy source; nil
// when there is none, or it was kept for another repository, branch or
// path (said in the log).
func (g *Gateway) loadSourceCache(cfg *Config) *policysource.Commit {
	path := filepath.Join(cfg.stateDir(), sourceCacheFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var sc sourceCache
	if err == nil {
		err = json.Unmarshal(data, &sc)
	}
	if err == nil && sc.Commit == "" {
		err = errors.New("no commit")
	}
	if err != nil {
		g.log.Warn("cached policy not read", "file", path, "err", err)
		return nil
	}
	ps := cfg.PolicySource
	repo := policysource.Redact(ps.Repo)
	if sc.Repo != repo || sc.Branch != ps.Branch || sc.Path != ps.Path {
		g.log.Warn("cached policy ignored: it came from another policy source", "file", path,
			"cached", sc.Repo+" "+sc.Branch+":"+sc.Path, "configured", repo+" "+ps.Branch+":"+ps.Path)
		return nil
	}
	return &policysource.Commit{Hash: sc.Commit, Data: []byte(sc.Policy), Author: sc.Author, Subject: sc.Subject, Signer: sc.Signer, When: sc.When}
}

// saveSourceCache keeps c as the last good commit. A failure costs only
// the offline start, so it is logged, not returned.
func (g *Gateway) saveSourceCache(cfg *Config, c *policysource.Commit) {
	ps := cfg.PolicySource
	data, err := json.MarshalIndent(sourceCache{
		Repo: policysource.Redact(ps.Repo), Branch: ps.Branch, Path: ps.Path,
		Commit: c.Hash, Author: c.Author, Subject: c.Subject, Signer: c.Signer, When: c.When,
		AppliedAt: time.Now().UTC(), Policy: string(c.Data),
	}, "", "  ")
	if err == nil {
		err = writeStateFile(cfg.stateDir(), sourceCacheFile, data)
	}
	if err != nil {
		g.log.Error("last good policy not kept in state_dir: a restart while the repository is unreachable will not start", "err", err)
	}
}
