package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SourceStatus is the policy source in `wardgate status`: which commit
// runs, whether the branch has moved past it, and whether the repository
// answers.
type SourceStatus struct {
	Repo    string `json:"repo"`
	Branch  string `json:"branch"`
	Path    string `json:"path"`
	Commit  string `json:"commit"`
	Subject string `json:"subject,omitempty"`
	Author  string `json:"author,omitempty"`
	Signer  string `json:"signer,omitempty"`
	// Head is the branch head at the last good fetch; Behind says it is
	// not the commit running (it was refused, see Refused).
	Head      string    `json:"head,omitempty"`
	Behind    bool      `json:"behind"`
	LastFetch time.Time `json:"last_fetch,omitzero"`
	FetchErr  string    `json:"fetch_error,omitempty"`
	// Offline: running the policy kept in state_dir; the repository has
	// not answered since start.
	Offline   bool   `json:"offline"`
	Refused   string `json:"refused,omitempty"`
	RefusedBy string `json:"refused_error,omitempty"`
}

// sourceStatus reports the follower; nil without a policy source.
func (g *Gateway) sourceStatus() *SourceStatus {
	f := g.follow
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &SourceStatus{
		Repo: f.cfg.Repo, Branch: f.cfg.Branch, Path: f.cfg.Path,
		Commit: f.running.Hash, Subject: f.running.Subject, Author: f.running.Author, Signer: f.running.Signer,
		Head: f.head, Behind: f.head != "" && f.head != f.running.Hash,
		LastFetch: f.lastFetch, FetchErr: f.fetchErr, Offline: f.offline,
		Refused: f.refused, RefusedBy: f.refusedAt,
	}
}

// sourceCollector reports the policy source as status shows it: the
// commit running, whether the branch is ahead of it, the last good fetch,
// and whether the gateway runs its cached policy because the repository
// has not answered since start.
func (g *Gateway) sourceCollector() prometheus.Collector {
	commit := prometheus.NewDesc("wardgate_policy_commit_info",
		"The policy source commit this gateway runs (value 1).", []string{"commit"}, nil)
	behind := prometheus.NewDesc("wardgate_policy_source_behind",
		"1 when the branch head at the last fetch is not the commit running (it was refused).", nil, nil)
	fetched := prometheus.NewDesc("wardgate_policy_source_last_fetch_timestamp_seconds",
		"When the policy source was last fetched successfully (Unix time; 0 never since start).", nil, nil)
	offline := prometheus.NewDesc("wardgate_policy_source_offline",
		"1 when the gateway runs the policy cached in state_dir and the repository has not answered since start.", nil, nil)
	fetches := prometheus.NewDesc("wardgate_policy_source_fetches_total",
		"Fetches of the policy source by result (ok, error).", []string{"result"}, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{commit, behind, fetched, offline, fetches}, collect: func(ch chan<- prometheus.Metric) {
		f := g.follow
		if f == nil {
			return
		}
		s := g.sourceStatus()
		f.mu.Lock()
		ok, failed := f.fetches[0], f.fetches[1]
		f.mu.Unlock()
		var last float64
		if !s.LastFetch.IsZero() {
			last = float64(s.LastFetch.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(commit, prometheus.GaugeValue, 1, s.Commit)
		ch <- prometheus.MustNewConstMetric(behind, prometheus.GaugeValue, boolValue(s.Behind))
		ch <- prometheus.MustNewConstMetric(fetched, prometheus.GaugeValue, last)
		ch <- prometheus.MustNewConstMetric(offline, prometheus.GaugeValue, boolValue(s.Offline))
		ch <- prometheus.MustNewConstMetric(fetches, prometheus.CounterValue, float64(ok), "ok")
		ch <- prometheus.MustNewConstMetric(fetches, prometheus.CounterValue, float64(failed), "error")
	}}
}
