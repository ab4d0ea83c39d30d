// Package gittest makes git repositories for tests and benchmarks of
// policy sources: real repositories on disk, written with go-git, with
// commits signed by OpenPGP keys made on the spot.
package gittest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
)

// Repo is a repository with a working tree on disk, on branch main.
type Repo struct {
	Dir  string
	repo *git.Repository
	wt   *git.Worktree
	tb   testing.TB
	now  time.Time
}

// New makes an empty repository under the test's temporary directory.
func New(tb testing.TB) *Repo {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "policy-repo")
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		tb.Fatal(err)
	}
	return &Repo{Dir: dir, repo: repo, wt: wt, tb: tb, now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
}

// URL is the file:// URL of the repository's git directory.
func (r *Repo) URL() string { return "file://" + filepath.Join(r.Dir, ".git") }

// GitDir is the repository's git directory.
func (r *Repo) GitDir() string { return filepath.Join(r.Dir, ".git") }

// Commit writes data to path and commits it on main, signed by signer
// when it is not nil, and returns the commit hash.
func (r *Repo) Commit(path string, data []byte, msg string, signer *openpgp.Entity) string {
	r.tb.Helper()
	full := filepath.Join(r.Dir, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o644); err != nil {
		r.tb.Fatal(err)
	}
	if _, err := r.wt.Add(path); err != nil {
		r.tb.Fatal(err)
	}
	r.now = r.now.Add(time.Minute)
	h, err := r.wt.Commit(msg, &git.CommitOptions{
		Author:            &object.Signature{Name: "Policy Reviewer", Email: "reviewer@trust.example", When: r.now},
		SignKey:           signer,
		AllowEmptyCommits: true,
	})
	if err != nil {
		r.tb.Fatal(err)
	}
	return h.String()
}

// Reset moves main back to commit hash, as a force push would.
func (r *Repo) Reset(hash string) {
	r.tb.Helper()
	if err := r.wt.Reset(&git.ResetOptions{Commit: plumbing.NewHash(hash), Mode: git.HardReset}); err != nil {
		r.tb.Fatal(err)
	}
}

// NewKey makes an OpenPGP signing key and returns it with its armored
// public keyring, what allowed_signers holds.
func NewKey(tb testing.TB, name string) (*openpgp.Entity, string) {
	tb.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@trust.example", nil)
	if err != nil {
		tb.Fatal(err)
	}
	return e, Armor(tb, e)
}

// Armor is the armored public keys of es, one keyring.
func Armor(tb testing.TB, es ...*openpgp.Entity) string {
	tb.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range es {
		if err := e.Serialize(w); err != nil {
			tb.Fatal(err)
		}
	}
	w.Close()
	return buf.String()
}

// ServeFilesInProcess makes go-git fetch file:// URLs in process (a
// repository's git directory, as URL gives it) instead of running
// git-upload-pack: a hundred followers polling one repository would
// otherwise start a hundred processes a poll. It is process-wide; for
// benchmarks.
func ServeFilesInProcess() {
	client.InstallProtocol("file", server.NewServer(server.NewFilesystemLoader(osfs.New("/"))))
}
