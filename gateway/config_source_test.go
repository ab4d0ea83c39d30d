package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/wardgate/wardgate/gateway/policysource/gittest"
)

func TestPolicySourceConfig(t *testing.T) {
	dir := t.TempDir()
	_, pub := gittest.NewKey(t, "alice")
	os.WriteFile(filepath.Join(dir, "signers.asc"), []byte(pub), 0o644)
	os.WriteFile(filepath.Join(dir, "junk.asc"), []byte("not a key"), 0o644)
	const head = "site = \"leeds\"\nprivate_key_file = \"k\"\n"
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error; none: accepted
	}{
		{"defaults", head + "[policy_source]\nrepo = \"https://git.trust.example/seg.git\"\n", nil},
		{"all keys", head + "[policy_source]\nrepo = \"ssh://git@git.trust.example/seg.git\"\nbranch = \"release/2026\"\npath = \"sites/policy.toml\"\npoll = \"5s\"\nallowed_signers = \"signers.asc\"\n", nil},
		{"no repo", head + "[policy_source]\nbranch = \"main\"\n", []string{"gateway.toml:3:1: policy_source.repo is required"}},
		{"both policy and source", head + "policy = \"p.toml\"\n[policy_source]\nrepo = \"https://x/seg.git\"\n",
			[]string{"gateway.toml:3:1: policy and [policy_source] are both set"}},
		{"bad values", head + "[policy_source]\nrepo = \"ftp://x/seg\"\nbranch = \"refs/heads/main\"\npath = \"../policy.toml\"\npoll = \"0s\"\nallowed_signers = \"junk.asc\"\n",
			[]string{
				`gateway.toml:4:1: policy_source.repo "ftp://x/seg": scheme "ftp"`,
				`gateway.toml:5:1: policy_source.branch "refs/heads/main"`,
				`gateway.toml:6:1: policy_source.path "../policy.toml"`,
				`gateway.toml:7:1: policy_source.poll = "0s" must be positive`,
				`gateway.toml:8:1: policy_source.allowed_signers "junk.asc": not an armored OpenPGP keyring`,
			}},
		{"missing signers file", head + "[policy_source]\nrepo = \"https://x/seg.git\"\nallowed_signers = \"nowhere.asc\"\n",
			[]string{`gateway.toml:5:1: policy_source.allowed_signers "nowhere.asc"`, "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(filepath.Join(dir, "gateway.toml"), []byte(tc.text))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !cfg.FollowsRepo() || cfg.PolicySource.Branch == "" || cfg.PolicySource.Path == "" || cfg.PolicySource.Poll <= 0 {
					t.Errorf("defaults not applied: %+v", cfg.PolicySource)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPolicySourceSSHKey(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "deploy"), pem.EncodeToMemory(block), 0o600)
	for _, tc := range []struct{ key, want string }{
		{"deploy", ""},
		{"missing", "policy_source.ssh_key"},
	} {
		text := "site = \"leeds\"\nprivate_key_file = \"k\"\n[policy_source]\nrepo = \"ssh://deploy@git.trust.example/seg.git\"\nssh_key = \"" + tc.key + "\"\n"
		cfg, err := ParseConfig(filepath.Join(dir, "gateway.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cfg.policySource("")
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ssh_key %s: %v, want %q", tc.key, err, tc.want)
		}
	}
}
