package console

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/policy"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago":      func(now, t time.Time) string { return roughly(now.Sub(t)) + " ago" },
	"duration": roughly,
	"bytes":    humanBytes,
	"inc":      func(n int) int { return n + 1 },
	"verdicts": func() []string { return []string{"allow", "audit", "deny"} },
}

// roughly prints d to the second below a minute, then to the minute.
func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

type overviewData struct {
	Overview
	Now    time.Time
	Counts map[string]uint64
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "overview", "Overview", overviewData{Overview: s.src.Overview(), Now: s.now(), Counts: s.src.Feed().Counts()})
}

// explainData is the explain form and, once asked, the answer.
type explainData struct {
	From, To, Port, At   string
	Identities, Services []string
	Asked                bool
	Problems             []string
	Decision             policy.Decision
	Sentence             string
	Time                 time.Time
	Auditing             bool // the gateway lets would-be denials through
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	p, v := s.src.Policy(), r.URL.Query()
	d := explainData{From: v.Get("from"), To: v.Get("to"), Port: v.Get("port"), At: v.Get("at")}
	for _, id := range p.Identities() {
		d.Identities = append(d.Identities, id.Name)
	}
	for _, svc := range p.Services() {
		d.Services = append(d.Services, svc.Name)
	}
	d.Services = append(d.Services, policy.ConsoleService)
	if d.From != "" || d.To != "" {
		d.Asked = true
		s.answer(p, &d)
	}
	s.render(w, r, "explain", "Explain", d)
}

// answer fills in the decision, or the problems with the question.
func (s *Server) answer(p *policy.Policy, d *explainData) {
	id, svc := p.Identity(d.From), p.Service(d.To)
	if id == nil {
		d.Problems = append(d.Problems, "unknown identity "+policy.Quote(d.From)+didYouMean(d.From, d.Identities))
	}
	if svc == nil {
		d.Problems = append(d.Problems, "unknown service "+policy.Quote(d.To)+didYouMean(d.To, d.Services))
	}
	ports := policy.PortRange{Proto: policy.ProtoICMP}
	if d.Port != "" {
		var err error
		if ports, err = policy.ParsePortRange(d.Port); err != nil {
			d.Problems = append(d.Problems, err.Error())
		}
	} else if svc != nil && len(svc.Ports) > 0 {
		ports = svc.Ports[0]
		d.Port = ports.String()
	}
	d.Time = s.now()
	if d.At != "" {
		t, err := parseAt(d.At)
		if err != nil {
			d.Problems = append(d.Problems, err.Error())
		}
		d.Time = t
	}
	if len(d.Problems) > 0 {
		return
	}
	d.Decision, d.Sentence = p.Explain(id, svc, ports.Lo, ports.Proto, d.Time)
	d.Auditing = !s.src.Overview().Enforcing && !d.Decision.Allowed() && svc != p.Console()
}

// parseAt reads the form's time: RFC 3339, or a browser's datetime-local
// value taken as UTC.
func parseAt(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %s: want RFC 3339, e.g. 2026-12-01T18:00:00Z", policy.Quote(s))
}

func didYouMean(name string, candidates []string) string {
	if c, ok := policy.Nearest(name, candidates); ok {
		return " (did you mean " + policy.Quote(c) + "?)"
	}
	return ""
}

// grant is a rule with an expiry still ahead.
type grant struct {
	*policy.Rule
	Left time.Duration
}

type grantsData struct {
	Grants      []grant
	Suggestions []Suggestion
	Suggest     bool // suggestions are available from this gateway
	Now         time.Time
}

func (s *Server) grants(w http.ResponseWriter, r *http.Request) {
	d := grantsData{Now: s.now()}
	d.Grants = activeGrants(s.src.Policy(), d.Now)
	d.Suggestions, d.Suggest = s.src.Suggestions()
	s.render(w, r, "grants", "Grants", d)
}

// activeGrants are the rules that expire after now, soonest first.
func activeGrants(p *policy.Policy, now time.Time) []grant {
	var out []grant
	for _, r := range p.Rules() {
		if !r.Expires.IsZero() && r.Expires.After(now) {
			out = append(out, grant{Rule: r, Left: r.Expires.Sub(now)})
		}
	}
	slices.SortFunc(out, func(a, b grant) int {
		if c := a.Expires.Compare(b.Expires); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
