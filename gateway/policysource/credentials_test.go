package policysource

import (
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

func TestSplitCredentials(t *testing.T) {
	for _, tc := range []struct {
		in, url, user, pass string
	}{
		{"https://glpat-x@git.trust.example/seg.git", "https://git.trust.example/seg.git", "glpat-x", ""},
		{"https://deploy:tok@git.trust.example/seg.git", "https://git.trust.example/seg.git", "deploy", "tok"},
		{"https://git.trust.example/seg.git", "https://git.trust.example/seg.git", "", ""},
		{"ssh://git@git.trust.example/seg.git", "ssh://git@git.trust.example/seg.git", "", ""},
	} {
		url, auth := splitCredentials(tc.in, nil)
		if url != tc.url {
			t.Errorf("%s: url %s, want %s", tc.in, url, tc.url)
		}
		ba, _ := auth.(*githttp.BasicAuth)
		switch {
		case tc.user == "" && auth != nil:
			t.Errorf("%s: auth %v, want none", tc.in, auth)
		case tc.user != "" && (ba == nil || ba.Username != tc.user || ba.Password != tc.pass):
			t.Errorf("%s: auth %#v, want %s:%s", tc.in, auth, tc.user, tc.pass)
		}
	}
}
