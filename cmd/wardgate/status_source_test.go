package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/gateway/policysource/gittest"
)

func TestStatusShowsThePolicySource(t *testing.T) {
	now := time.Now()
	const running, head = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	for _, tc := range []struct {
		name string
		ps   gateway.SourceStatus
		want []string
	}{
		{"up to date", gateway.SourceStatus{Repo: "git://git.trust.example/seg", Branch: "main", Path: "policy.toml",
			Commit: running, Subject: "york: add pacs", Signer: "alice (ABCD)", Head: running, LastFetch: now.Add(-12 * time.Second)},
			[]string{`policy source:\s+git://git.trust.example/seg main:policy.toml`, `policy commit:\s+111111111111 "york: add pacs", signed by alice \(ABCD\)`, `fetched:\s+1[23]s ago`,
				`york\s+100\.80\.0\.2\s+yes\s+fedcba9876543210\s+DIFFERENT\s+never\s+222222222222 DIFFERENT`}},
		{"offline", gateway.SourceStatus{Commit: running, Offline: true, FetchErr: "connection refused"},
			[]string{`fetched:\s+OFFLINE: the repository has not answered since start; .*connection refused\)`}},
		{"behind", gateway.SourceStatus{Commit: running, Head: head, Behind: true, Refused: head, RefusedBy: "policy.toml@222222222222:3:1: syntax error", LastFetch: now},
			[]string{`behind:\s+YES: the branch is at 222222222222, refused: policy.toml@222222222222:3:1: syntax error`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := sampleStatus(now)
			st.PolicySource = &tc.ps
			st.SiteLinks[0].PolicyCommit = head
			var buf bytes.Buffer
			printStatus(&buf, st, now)
			for _, re := range tc.want {
				if !regexpLine(buf.String(), re) {
					t.Errorf("status lacks a line matching %s:\n%s", re, buf.String())
				}
			}
		})
	}
}

func TestCheckFetchesThePolicySource(t *testing.T) {
	text, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t)
	head := repo.Commit("policy.toml", text, "example", nil)
	dir := t.TempDir()
	_, pub := gittest.NewKey(t, "change-board")
	os.WriteFile(filepath.Join(dir, "signers.asc"), []byte(pub), 0o644)
	conf := fmt.Sprintf("site = \"leeds\"\nprivate_key_file = \"missing.key\"\n[policy_source]\nrepo = %q\n", repo.URL())
	gw := filepath.Join(dir, "gateway.toml")
	os.WriteFile(gw, []byte(conf), 0o644)
	code, out, errs := runCLI("check", "-c", gw)
	if code != 0 || !strings.Contains(out, "policy.toml@"+policysource.Short(head)+":") || !strings.Contains(out, "tests passed") {
		t.Errorf("check of a gateway.toml following a repository: exit %d\n%s%s", code, out, errs)
	}
	os.WriteFile(gw, []byte(conf+"allowed_signers = \"signers.asc\"\n"), 0o644)
	code, _, errs = runCLI("check", "-c", gw)
	if code != 1 || !strings.Contains(errs, "is not signed") {
		t.Errorf("check with signers required and an unsigned head: exit %d\n%s", code, errs)
	}
}

func TestReloadPrintsTheCommit(t *testing.T) {
	var buf bytes.Buffer
	printReload(&buf, &gateway.ReloadChanges{PolicyHash: "a", PreviousHash: "a", Commit: strings.Repeat("1", 40), PreviousCommit: strings.Repeat("1", 40)})
	if !strings.Contains(buf.String(), "commit: 111111111111 (unchanged)") {
		t.Errorf("reload output: %s", buf.String())
	}
	buf.Reset()
	printReload(&buf, &gateway.ReloadChanges{PolicyHash: "a", PreviousHash: "a"})
	if strings.Contains(buf.String(), "commit") {
		t.Errorf("a reload without a policy source mentions a commit: %s", buf.String())
	}
}
