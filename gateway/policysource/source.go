// Package policysource follows one file on one branch of a git repository:
// the policy a fleet of gateways shares, reviewed and versioned where the
// trust keeps its other reviewed changes. It fetches with go-git (no git
// binary, no working tree: a bare clone on disk, or objects in memory) and hands out the
// file at a commit only after the checks that do not need the policy
// itself: the commit descends from the one running (no rollback by a
// rewritten branch) and, with signers, carries a good signature by one of
// them. Loading, validating and testing the policy is the gateway's job.
package policysource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Config says what to follow.
type Config struct {
	Repo   string // URL: https://, ssh://, git://, file://
	Branch string
	Path   string // the policy file inside the repository
	// Signers is an armored OpenPGP keyring. When set, a commit is handed
	// out only if its signature verifies against one of its keys.
	Signers string
	// Auth authenticates the fetch (ssh keys, https tokens); nil is
	// go-git's default for the scheme (the SSH agent for ssh://).
	Auth transport.AuthMethod
	// Dir holds a bare clone, made there if missing, so that a restart
	// fetches only what is new and history does not live in memory
	// (go-git's memory storage keeps every object uncompressed). Empty:
	// in memory, for one-off reads.
	Dir string
}

// Source is a followed repository. Fetch and Read are not safe for
// concurrent use: one goroutine follows a source.
type Source struct {
	cfg    Config
	repo   *git.Repository
	remote *git.Remote
	ref    plumbing.ReferenceName
}

// maxPolicySize bounds the file read from a commit; policy.Parse has its
// own, smaller, limit and names it.
const maxPolicySize = 16 << 20

// New prepares to follow cfg. It does not touch the network.
func New(cfg Config) (*Source, error) {
	if err := CheckURL(cfg.Repo); err != nil {
		return nil, err
	}
	if cfg.Signers != "" {
		if err := CheckSigners(cfg.Signers); err != nil {
			return nil, err
		}
	}
	cfg.Repo, cfg.Auth = splitCredentials(cfg.Repo, cfg.Auth)
	repo, err := openRepo(cfg.Dir)
	if err != nil {
		return nil, err
	}
	remote, err := repo.Remote("origin")
	if err == nil && (len(remote.Config().URLs) != 1 || remote.Config().URLs[0] != cfg.Repo) {
		err = repo.DeleteRemote("origin") // the repository moved
		remote = nil
	}
	if remote == nil && (err == nil || errors.Is(err, git.ErrRemoteNotFound)) {
		remote, err = repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{cfg.Repo}})
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Dir, err)
	}
	return &Source{cfg: cfg, repo: repo, remote: remote, ref: plumbing.NewRemoteReferenceName("origin", cfg.Branch)}, nil
}

// splitCredentials takes a user and token out of an https URL and makes
// them the fetch's authentication, so that they are not written into the
// clone's config on disk.
func splitCredentials(repo string, auth transport.AuthMethod) (string, transport.AuthMethod) {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil || (u.Scheme != "https" && u.Scheme != "http") {
		return repo, auth
	}
	if auth == nil {
		pass, _ := u.User.Password()
		auth = &githttp.BasicAuth{Username: u.User.Username(), Password: pass}
	}
	u.User = nil
	return u.String(), auth
}

// openRepo opens the bare clone in dir, or makes it; one that does not
// open is made again (it is only a cache of the repository). Empty dir is
// memory.
func openRepo(dir string) (*git.Repository, error) {
	if dir == "" {
		return git.Init(memory.NewStorage(), nil)
	}
	storage := func() *filesystem.Storage {
		return filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(4*cache.MiByte))
	}
	if repo, err := git.Open(storage(), nil); err == nil {
		return repo, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	return git.Init(storage(), nil)
}

// Redact hides the password or token of a repository URL
// (https://TOKEN@host/... or https://user:TOKEN@host/...), for logs,
// status and the state directory.
func Redact(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil {
		return repo
	}
	if _, hasPass := u.User.Password(); hasPass {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	} else if u.Scheme == "https" || u.Scheme == "http" {
		u.User = url.User("REDACTED") // a token as the user name
	}
	return u.String()
}

// CheckURL accepts the repository URLs go-git can fetch from.
func CheckURL(repo string) error {
	ep, err := transport.NewEndpoint(repo)
	if err != nil {
		return fmt.Errorf("repo %q: %v", Redact(repo), err)
	}
	switch ep.Protocol {
	case "https", "http", "ssh", "git", "file":
		return nil
	}
	return fmt.Errorf("repo %q: scheme %q: want https, ssh, git or file", Redact(repo), ep.Protocol)
}

// Fetch brings the branch up to date and returns its head commit. The
// head moves only when a fetch completed: objects of a fetch that failed
// halfway are never reachable from it.
func (s *Source) Fetch(ctx context.Context) (string, error) {
	spec := gitconfig.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", s.cfg.Branch, s.ref))
	err := s.remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: []gitconfig.RefSpec{spec}, Auth: s.cfg.Auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return "", fmt.Errorf("fetch %s: %w", Redact(s.cfg.Repo), err)
	}
	ref, err := s.repo.Reference(s.ref, true)
	if err != nil {
		return "", fmt.Errorf("fetch %s: branch %q: %w", Redact(s.cfg.Repo), s.cfg.Branch, err)
	}
	return ref.Hash().String(), nil
}

// Commit is a commit's policy file, with what the audit log says of it.
type Commit struct {
	Hash    string
	Data    []byte
	Author  string // "Name <email>"
	When    time.Time
	Subject string
	// Signer names the allowed key that signed it; empty without signers.
	Signer string
}

// Short is the commit's abbreviated hash, for file names in messages.
func Short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// Read returns the policy file at commit hash, which must descend from
// running (the commit in force; empty when there is none) and, with
// signers, be signed by one of them. Its errors say why the commit is
// refused.
func (s *Source) Read(hash, running string) (*Commit, error) {
	c, err := s.repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", Short(hash), err)
	}
	if running != "" && running != hash {
		if err := s.checkDescends(c, running); err != nil {
			return nil, err
		}
	}
	out := &Commit{Hash: hash, Author: c.Author.String(), When: c.Committer.When, Subject: subject(c.Message)}
	if s.cfg.Signers != "" {
		if out.Signer, err = s.verify(c); err != nil {
			return nil, err
		}
	}
	f, err := c.File(s.cfg.Path)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, fmt.Errorf("commit %s: no file %s in it", Short(hash), s.cfg.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %s: %w", Short(hash), s.cfg.Path, err)
	}
	if f.Size > maxPolicySize {
		return nil, fmt.Errorf("commit %s: %s is %d bytes, more than the %d accepted", Short(hash), s.cfg.Path, f.Size, maxPolicySize)
	}
	r, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %s: %w", Short(hash), s.cfg.Path, err)
	}
	defer r.Close()
	if out.Data, err = io.ReadAll(r); err != nil {
		return nil, fmt.Errorf("commit %s: %s: %w", Short(hash), s.cfg.Path, err)
	}
	return out, nil
}

// checkDescends refuses a head that does not have the running commit in
// its history: a branch reset to an older commit, or rewritten. Moving
// back is a new commit (git revert), reviewed and signed like any other,
// so that an old signed commit cannot be replayed to undo a later one.
func (s *Source) checkDescends(c *object.Commit, running string) error {
	old, err := s.repo.CommitObject(plumbing.NewHash(running))
	if err == nil {
		var ok bool
		if ok, err = old.IsAncestor(c); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("commit %s does not descend from the running commit %s: the branch was reset or rewritten; undo a change with a new commit (git revert)", Short(c.Hash.String()), Short(running))
}

// verify checks the commit's OpenPGP signature against the allowed
// signers and names the key that made it.
func (s *Source) verify(c *object.Commit) (string, error) {
	short := Short(c.Hash.String())
	if c.PGPSignature == "" {
		return "", fmt.Errorf("commit %s is not signed, and allowed_signers requires a signature from one of its keys", short)
	}
	e, err := c.Verify(s.cfg.Signers)
	if err != nil {
		return "", fmt.Errorf("commit %s: signature not verified by allowed_signers: %v", short, err)
	}
	return signerName(e), nil
}

func signerName(e *openpgp.Entity) string {
	for name := range e.Identities {
		return fmt.Sprintf("%s (%X)", name, e.PrimaryKey.Fingerprint)
	}
	return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

func subject(msg string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	return s
}

// CheckSigners accepts an armored OpenPGP keyring with at least one key.
func CheckSigners(armored string) error {
	keys, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err == nil && len(keys) == 0 {
		err = errors.New("no keys")
	}
	if err != nil {
		return fmt.Errorf("not an armored OpenPGP keyring: %v", err)
	}
	return nil
}

// CheckPath accepts a relative, clean path inside the repository.
func CheckPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("path %q: want a relative path inside the repository, like \"policy.toml\"", p)
	}
	return nil
}

// CheckBranch accepts a branch name git would.
func CheckBranch(b string) error {
	if b == "" || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "refs/") ||
		strings.ContainsAny(b, " ~^:?*[\\\x7f") || strings.Contains(b, "..") || strings.HasSuffix(b, ".lock") || strings.HasSuffix(b, "/") {
		return fmt.Errorf("branch %q: not a valid branch name (write \"main\", not \"refs/heads/main\")", b)
	}
	return nil
}
