package dnsfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/policy"
)

// fakeView is a View over a few identities and services; reach says which
// identity (by name) can reach which service (by name).
type fakeView struct {
	ov    policy.Overlay
	ids   []*policy.Identity
	svcs  []*policy.Service
	reach map[string]map[string]bool
	// hidden: why a service is hidden from an identity, when not no-rule.
	hidden map[string]map[string]policy.Decision
	// quarantineAllow: services of [quarantine] allow.
	quarantineAllow map[string]bool
}

func (v *fakeView) Overlay() policy.Overlay { return v.ov }

func (v *fakeView) IdentityByAddr(a netip.Addr) *policy.Identity {
	for _, id := range v.ids {
		if id.Address == a {
			return id
		}
	}
	return nil
}

func (v *fakeView) Service(name string) *policy.Service {
	for _, s := range v.svcs {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (v *fakeView) ServiceByName(fqdn string) *policy.Service {
	for _, s := range v.svcs {
		if s.Site != "" && fqdn == s.Name+"."+v.ov.Domain {
			return s
		}
		for _, n := range s.DNS {
			if n == fqdn {
				return s
			}
		}
	}
	return nil
}

func (v *fakeView) EgressServices(fqdn string) []*policy.Service {
	var out []*policy.Service
	for _, s := range v.svcs {
		for _, p := range s.Egress {
			if dnsname.Match(p, fqdn) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func (v *fakeView) Services() []*policy.Service { return v.svcs }

// QuarantineAllows keeps the services named in quarantineAllow reachable
// in quarantine.
func (v *fakeView) QuarantineAllows(svc *policy.Service) bool { return v.quarantineAllow[svc.Name] }

func (v *fakeView) CanReach(id *policy.Identity, svc *policy.Service) bool {
	return v.reach[id.Name][svc.Name]
}

// ReachDecision is Allow where reach says so, else what hidden says, else
// a denial for want of a rule.
func (v *fakeView) ReachDecision(id *policy.Identity, svc *policy.Service) policy.Decision {
	if v.CanReach(id, svc) {
		return policy.Decision{Verdict: policy.Allow}
	}
	if d, ok := v.hidden[id.Name][svc.Name]; ok {
		return d
	}
	return policy.Decision{Verdict: policy.Deny, Reason: policy.ReasonNoRule}
}

// testView: alice (100.80.1.10) reaches pacs, pacs6, nhs-web; bob
// (100.80.1.11) reaches nothing.
func testView() *fakeView {
	alice := &policy.Identity{ID: 0, Name: "alice", Address: netip.MustParseAddr("100.80.1.10"), Site: "leeds"}
	bob := &policy.Identity{ID: 1, Name: "bob", Address: netip.MustParseAddr("100.80.1.11"), Site: "york"}
	tcp443 := []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}
	return &fakeView{
		ov: policy.Overlay{
			Prefix:        netip.MustParsePrefix("100.80.0.0/16"),
			ServicePrefix: netip.MustParsePrefix("100.81.0.0/16"),
			Domain:        "nhs.internal",
		},
		ids: []*policy.Identity{alice, bob},
		svcs: []*policy.Service{
			{ID: 0, Name: "pacs", Site: "leeds", VIP: netip.MustParseAddr("100.81.0.10"), DNS: []string{"pacs.leeds.example"}, Ports: tcp443},
			{ID: 1, Name: "pacs6", Site: "leeds", VIP: netip.MustParseAddr("fd00:81::10"), Ports: tcp443},
			{ID: 2, Name: "nhs-web", Egress: []string{"*.nhs.uk"}, Ports: tcp443},
			{ID: 3, Name: "nhs-any", Egress: []string{"**.nhs.uk"}, Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 80, Hi: 80}}},
		},
		reach: map[string]map[string]bool{"alice": {"pacs": true, "pacs6": true, "nhs-web": true, "nhs-any": true}},
	}
}

var (
	aliceAddr = &net.UDPAddr{IP: net.ParseIP("100.80.1.10"), Port: 40000}
	bobAddr   = &net.UDPAddr{IP: net.ParseIP("100.80.1.11"), Port: 40000}
	evilAddr  = &net.UDPAddr{IP: net.ParseIP("100.80.9.9"), Port: 40000}
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeWriter is a dns.ResponseWriter that keeps what is written.
type fakeWriter struct {
	remote net.Addr
	mu     sync.Mutex
	msgs   []*dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.ParseIP("100.80.0.1"), Port: 53}
}
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	// Pack as the server would, so that unpackable replies fail tests.
	if _, err := m.Pack(); err != nil {
		return err
	}
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	w.mu.Unlock()
	return nil
}
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

// auditBuf collects audit events as decoded JSON objects.
type auditBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (a *auditBuf) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.Write(p)
}

func (a *auditBuf) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(a, nil)) }

func (a *auditBuf) events(t *testing.T) []map[string]any {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(a.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func mustRR(format string, args ...any) dns.RR {
	rr, err := dns.NewRR(fmt.Sprintf(format, args...))
	if err != nil {
		panic(err)
	}
	return rr
}

// newTestFilter builds a filter over testView with the given upstreams and
// a fake clock.
func newTestFilter(t testing.TB, cfg Config, v View) (*Filter, *fakeClock, *auditBuf) {
	t.Helper()
	clk := newClock()
	audit := &auditBuf{}
	if cfg.Audit == nil {
		cfg.Audit = audit.logger()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	f, err := newFilter(cfg, func() View { return v }, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return f, clk, audit
}

// ask sends one question from remote through ServeDNS and returns the reply.
func ask(t testing.TB, f *Filter, remote net.Addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(dns.Fqdn(name), qtype)
	return exchange(t, f, remote, r)
}

func exchange(t testing.TB, f *Filter, remote net.Addr, r *dns.Msg) *dns.Msg {
	t.Helper()
	w := &fakeWriter{remote: remote}
	f.ServeDNS(w, r)
	if len(w.msgs) != 1 {
		t.Fatalf("%v: got %d replies, want 1", r.Question, len(w.msgs))
	}
	m := w.msgs[0]
	if m.Id != r.Id || !m.Response {
		t.Fatalf("reply id %d response %v to query %d", m.Id, m.Response, r.Id)
	}
	return m
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+r.Target)
		}
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
