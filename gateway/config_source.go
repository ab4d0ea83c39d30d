package gateway

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/policy"
)

// PolicySourceConfig is [policy_source]: the policy is a file on a branch
// of a git repository, which the gateway follows (docs/operating.md,
// "Policy from git"), instead of the local `policy` file.
type PolicySourceConfig struct {
	Repo   string `toml:"repo"`   // https://, ssh://, git:// or file:// URL
	Branch string `toml:"branch"` // default "main"
	Path   string `toml:"path"`   // in the repository, default "policy.toml"
	// Poll is how often the branch is fetched, default 30s.
	Poll time.Duration `toml:"poll"`
	// AllowedSigners is an armored OpenPGP keyring file: when set, only
	// commits signed by one of its keys apply.
	AllowedSigners string `toml:"allowed_signers"`
	// SSHKey is a private key file for ssh:// repositories; without it,
	// the SSH agent.
	SSHKey string `toml:"ssh_key"`
}

// DefaultPoll is how often a policy source is fetched by default.
const DefaultPoll = 30 * time.Second

// FollowsRepo reports whether the policy comes from a git repository.
func (c *Config) FollowsRepo() bool { return c.PolicySource.Repo != "" }

func (c *Config) sourceDefaults() {
	ps := &c.PolicySource
	if !c.FollowsRepo() {
		return
	}
	if ps.Branch == "" {
		ps.Branch = "main"
	}
	if ps.Path == "" {
		ps.Path = "policy.toml"
	}
	if ps.Poll == 0 {
		ps.Poll = DefaultPoll
	}
}

// checkSource validates [policy_source] against the rest of the config:
// it replaces `policy`, so exactly one of them is set.
func (c *Config) checkSource(md toml.MetaData, bad func(key, format string, args ...any)) {
	ps := c.PolicySource
	switch {
	case md.IsDefined("policy_source") && ps.Repo == "":
		bad("policy_source", "policy_source.repo is required: the URL of the repository holding the policy")
		return
	case !c.FollowsRepo():
		return
	case c.Policy != "":
		bad("policy", "policy and [policy_source] are both set: the policy comes from one place; remove `policy` to follow the repository")
	}
	if err := policysource.CheckURL(ps.Repo); err != nil {
		bad("policy_source.repo", "policy_source.%v", err)
	}
	if err := policysource.CheckBranch(ps.Branch); err != nil {
		bad("policy_source.branch", "policy_source.%v", err)
	}
	if err := policysource.CheckPath(ps.Path); err != nil {
		bad("policy_source.path", "policy_source.%v", err)
	}
	if ps.AllowedSigners != "" {
		data, err := os.ReadFile(c.Path(ps.AllowedSigners))
		if err == nil {
			err = policysource.CheckSigners(string(data))
		}
		if err != nil {
			bad("policy_source.allowed_signers", "policy_source.allowed_signers %s: %v", policy.Quote(ps.AllowedSigners), err)
		}
	}
}

// sourceCloneDir is the bare clone of the policy repository in state_dir.
const sourceCloneDir = "policy.git"

// policySource makes a source of the policy: a bare clone in dir (a
// following gateway's state_dir) or, with dir empty, in memory. The
// signers' keyring and the SSH key are read here, so a missing file is an
// error at start.
func (c *Config) policySource(dir string) (*policysource.Source, error) {
	ps := c.PolicySource
	cfg := policysource.Config{Repo: ps.Repo, Branch: ps.Branch, Path: ps.Path, Dir: dir}
	if ps.AllowedSigners != "" {
		data, err := os.ReadFile(c.Path(ps.AllowedSigners))
		if err != nil {
			return nil, fmt.Errorf("%s: policy_source.allowed_signers: %w", c.file, err)
		}
		cfg.Signers = string(data)
	}
	if ps.SSHKey != "" {
		user := "git"
		if ep, err := transport.NewEndpoint(ps.Repo); err == nil && ep.User != "" {
			user = ep.User
		}
		auth, err := ssh.NewPublicKeysFromFile(user, c.Path(ps.SSHKey), "")
		if err != nil {
			return nil, fmt.Errorf("%s: policy_source.ssh_key: %w", c.file, err)
		}
		cfg.Auth = auth
	}
	src, err := policysource.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: policy_source: %w", c.file, err)
	}
	return src, nil
}

// FetchPolicy fetches the head of the [policy_source] branch and loads its
// policy as a starting gateway would (signature, validation, [[test]]s,
// the config's site and listeners), for `wardgate check` and the other
// commands that read a gateway.toml.
func (c *Config) FetchPolicy(ctx context.Context) (*policy.Policy, *policysource.Commit, error) {
	src, err := c.policySource("")
	if err != nil {
		return nil, nil, err
	}
	head, err := src.Fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	cm, err := src.Read(head, "")
	if err != nil {
		return nil, nil, err
	}
	p, err := c.commitPolicy(cm)
	return p, cm, err
}
