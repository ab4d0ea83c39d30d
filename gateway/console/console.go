// Package console is wardgate's web console: who can reach what (the
// segmentation map, computed from the compiled policy), what is happening
// (live flows and decisions), why (explain) and what is temporary
// (time-limited grants). It is read-only; the explain form only asks.
//
// Pages are rendered on the server with html/template, which escapes every
// name that comes from a policy file or the audit stream; the assets are
// embedded, and the one script (live.js) only turns server-sent events
// into table rows with textContent. Every response carries a strict
// Content-Security-Policy: no inline script or style, nothing fetched from
// elsewhere, so a hostile name in a policy cannot run code in an operator's
// browser, and the console works on networks with no way out.
//
// The gateway supplies what the pages show through Source; it decides who
// may load them (the built-in service "console", see policy.ConsoleService).
package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Source is what the console reads from a running gateway. Every method is
// called per request, concurrently.
type Source interface {
	Overview() Overview
	// Policy is the policy in force.
	Policy() *policy.Policy
	// Flows are the live flows.
	Flows() []Flow
	// Feed carries the gateway's flow decisions as they are made.
	Feed() *Feed
	// Suggestions are rules proposed from observed flows (`wardgate
	// suggest`); available is false where the gateway cannot propose any.
	Suggestions() (s []Suggestion, available bool)
}

// Overview is the gateway's state for the overview page.
type Overview struct {
	Site, Address          string
	PolicyFile, PolicyHash string
	LoadedAt               time.Time
	Enforcing              bool
	Links                  []Link
	Peers                  []Peer
	ActiveFlows            int
	DNSQueries, DNSBlocked uint64
	DNSRefused             uint64
	// PolicySource is the git repository the policy follows; nil: a local
	// file.
	PolicySource *PolicySource
	// Quarantined are the identities in quarantine now.
	Quarantined []Quarantine
}

// PolicySource is the policy's git repository, as the gateway follows it.
type PolicySource struct {
	Repo, Branch, Commit, Subject, Signer string
	LastFetch                             time.Time
	// Behind: the branch head is not the commit running (Refused says
	// why); Offline: the repository has not answered since start.
	Behind, Offline bool
	Head, Refused   string
	FetchErr        string
}

// Quarantine is an identity in quarantine.
type Quarantine struct {
	Identity, Reason, By, Site string
	Since                      time.Time
}

// Link is the link to another site's gateway.
type Link struct {
	Site       string
	Healthy    bool
	PolicyHash string // as the other gateway reported it
	SameHash   bool
	Commit     string // the policy source commit the other gateway runs
	LastError  string
}

// Peer is a WireGuard peer of this gateway: an identity or a site.
type Peer struct {
	Name, Kind, Address string
	LastHandshake       time.Time // zero: never
}

// Flow is a live flow.
type Flow struct {
	ID, Identity, Site, Service string
	Proto                       string
	Port                        uint16
	Rule                        string
	Start                       time.Time
	BytesIn, BytesOut           int64
}

// Suggestion is a rule proposed from observed flows, with its evidence.
type Suggestion struct {
	Rule     string // TOML
	Evidence string
}

// Server serves the console pages.
type Server struct {
	src   Source
	now   func() time.Time
	pages map[string]*template.Template
	mux   *http.ServeMux
}

//go:embed templates static
var files embed.FS

// csp allows only this origin's own script, style and images, and no
// framing: everything the pages need is embedded.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// New returns the console over src; now is the clock for decisions and
// remaining times (nil is time.Now).
func New(src Source, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{src: src, now: now, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	for _, name := range []string{"overview", "map", "flows", "explain", "grants"} {
		s.pages[name] = template.Must(template.New("layout.tmpl").Funcs(funcs).ParseFS(files, "templates/layout.tmpl", "templates/"+name+".tmpl"))
	}
	static, _ := fs.Sub(files, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", s.overview)
	s.mux.HandleFunc("GET /map", s.matrix)
	s.mux.HandleFunc("GET /flows", s.flows)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.HandleFunc("GET /explain", s.explain)
	s.mux.HandleFunc("GET /grants", s.grants)
	return s
}

// ServeHTTP adds the security headers to every response, errors included.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// page is what every page's layout needs, plus the page's own data.
type page struct {
	Title     string
	Nav       string
	Site      string
	Enforcing bool
	Viewer    string
	Data      any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	ov := s.src.Overview()
	p := page{Title: title, Nav: name, Site: ov.Site, Enforcing: ov.Enforcing, Viewer: viewer(r.Context()), Data: data}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.pages[name].Execute(w, p); err != nil {
		http.Error(w, "rendering failed: "+err.Error(), http.StatusInternalServerError)
	}
}

type viewerKey struct{}

// WithViewer records in ctx who is looking (the identity the gateway
// recognised the connection by), for the page header.
func WithViewer(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, viewerKey{}, name)
}

func viewer(ctx context.Context) string {
	if v, ok := ctx.Value(viewerKey{}).(string); ok {
		return v
	}
	return ""
}
