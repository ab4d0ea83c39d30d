package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway"
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
