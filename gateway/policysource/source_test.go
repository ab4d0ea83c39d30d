package policysource_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/gateway/policysource/gittest"
)

func follow(t *testing.T, repo *gittest.Repo, signers string) *policysource.Source {
	t.Helper()
	s, err := policysource.New(policysource.Config{Repo: repo.URL(), Branch: "main", Path: "policy.toml", Signers: signers})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fetch(t *testing.T, s *policysource.Source) string {
	t.Helper()
	head, err := s.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return head
}

func TestFollowsTheBranchHead(t *testing.T) {
	repo := gittest.New(t)
	first := repo.Commit("policy.toml", []byte("v1"), "first", nil)
	s := follow(t, repo, "")
	if head := fetch(t, s); head != first {
		t.Fatalf("head %s, want %s", head, first)
	}
	repo.Commit("README", []byte("x"), "unrelated", nil)
	second := repo.Commit("policy.toml", []byte("v2"), "second", nil)
	head := fetch(t, s)
	if head != second {
		t.Fatalf("head %s, want %s", head, second)
	}
	c, err := s.Read(head, first)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Data) != "v2" || c.Subject != "second" || !strings.Contains(c.Author, "reviewer@trust.example") {
		t.Errorf("read %+v", c)
	}
	// Up to date: the same head again.
	if again := fetch(t, s); again != second {
		t.Errorf("head %s after a fetch with nothing new, want %s", again, second)
	}
}

func TestRefusals(t *testing.T) {
	good, goodPub := gittest.NewKey(t, "alice")
	stranger, _ := gittest.NewKey(t, "mallory")
	for _, tc := range []struct {
		name    string
		signers string
		make    func(r *gittest.Repo) (running, head string)
		want    string // in the error; "" is accepted
	}{
		{"signed by an allowed key", goodPub, func(r *gittest.Repo) (string, string) {
			return "", r.Commit("policy.toml", []byte("v"), "ok", good)
		}, ""},
		{"unsigned with signers required", goodPub, func(r *gittest.Repo) (string, string) {
			return "", r.Commit("policy.toml", []byte("v"), "unsigned", nil)
		}, "is not signed"},
		{"signed by an unknown key", goodPub, func(r *gittest.Repo) (string, string) {
			return "", r.Commit("policy.toml", []byte("v"), "stranger", stranger)
		}, "signature not verified"},
		{"unsigned without signers", "", func(r *gittest.Repo) (string, string) {
			return "", r.Commit("policy.toml", []byte("v"), "unsigned", nil)
		}, ""},
		{"file missing", "", func(r *gittest.Repo) (string, string) {
			return "", r.Commit("other.toml", []byte("v"), "wrong file", nil)
		}, "no file policy.toml"},
		{"branch reset behind the running commit", "", func(r *gittest.Repo) (string, string) {
			old := r.Commit("policy.toml", []byte("v1"), "one", nil)
			running := r.Commit("policy.toml", []byte("v2"), "two", nil)
			r.Reset(old)
			return running, old
		}, "does not descend from the running commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := gittest.New(t)
			running, want := tc.make(repo)
			s := follow(t, repo, tc.signers)
			head := fetch(t, s)
			if head != want {
				t.Fatalf("head %s, want %s", head, want)
			}
			c, err := s.Read(head, running)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), policysource.Short(head)):
				t.Errorf("error %q does not name the commit %s", err, policysource.Short(head))
			case tc.want == "" && tc.signers != "" && !strings.Contains(c.Signer, "alice"):
				t.Errorf("signer %q, want alice's key", c.Signer)
			}
		})
	}
}

func TestConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		check func(string) error
		in    string
		ok    bool
	}{
		{policysource.CheckURL, "https://git.trust.example/seg.git", true},
		{policysource.CheckURL, "ssh://git@git.trust.example/seg.git", true},
		{policysource.CheckURL, "git://127.0.0.1:9418/seg", true},
		{policysource.CheckURL, "file:///srv/seg.git", true},
		{policysource.CheckURL, "ftp://x/seg", false},
		{policysource.CheckPath, "policy.toml", true},
		{policysource.CheckPath, "sites/policy.toml", true},
		{policysource.CheckPath, "../policy.toml", false},
		{policysource.CheckPath, "/policy.toml", false},
		{policysource.CheckPath, "a//b.toml", false},
		{policysource.CheckBranch, "main", true},
		{policysource.CheckBranch, "release/2026", true},
		{policysource.CheckBranch, "refs/heads/main", false},
		{policysource.CheckBranch, "a..b", false},
		{policysource.CheckBranch, "", false},
	} {
		if err := tc.check(tc.in); (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestUnreachableRepository(t *testing.T) {
	s, err := policysource.New(policysource.Config{Repo: "file:///nonexistent/repo.git", Branch: "main", Path: "policy.toml"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(context.Background()); err == nil {
		t.Fatal("fetch from a missing repository succeeded")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://glpat-secret@git.trust.example/seg.git":      "https://REDACTED@git.trust.example/seg.git",
		"https://deploy:glpat-secret@git.trust.example/s.git": "https://deploy:REDACTED@git.trust.example/s.git",
		"ssh://git@git.trust.example/seg.git":                 "ssh://git@git.trust.example/seg.git",
		"git://127.0.0.1:9418/seg.git":                        "git://127.0.0.1:9418/seg.git",
	} {
		if got := policysource.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// A clone on disk survives a restart, follows a repository that moved,
// and is made again when damaged.
func TestCloneOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy.git")
	repo := gittest.New(t)
	first := repo.Commit("policy.toml", []byte("v1"), "first", nil)
	open := func(url string) *policysource.Source {
		t.Helper()
		s, err := policysource.New(policysource.Config{Repo: url, Branch: "main", Path: "policy.toml", Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if head := fetch(t, open(repo.URL())); head != first {
		t.Fatalf("head %s, want %s", head, first)
	}
	// Reopened: the first commit is there without a fetch.
	if c, err := open(repo.URL()).Read(first, ""); err != nil || string(c.Data) != "v1" {
		t.Fatalf("read from the reopened clone: %v", err)
	}
	// The repository moved: the clone follows the new URL.
	moved := gittest.New(t)
	other := moved.Commit("policy.toml", []byte("elsewhere"), "moved", nil)
	if head := fetch(t, open(moved.URL())); head != other {
		t.Fatalf("head after the move %s, want %s", head, other)
	}
	// Damaged: made again, and fetches.
	if err := os.WriteFile(filepath.Join(dir, "HEAD"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "objects"))
	if head := fetch(t, open(moved.URL())); head != other {
		t.Fatalf("head after damage %s, want %s", head, other)
	}
}
