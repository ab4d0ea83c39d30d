package console

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// hostile is markup that must reach the browser as text.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

// inline finds what the CSP would refuse: a script element without src, a
// style attribute or element, an event handler attribute.
var inline = regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|<[a-z][^>]*\s(style|on[a-z]+)=`)

// fakeSource is a gateway's console source made of plain values around a
// real policy.
type fakeSource struct {
	pol   *policy.Policy
	ov    Overview
	flows []Flow
	feed  *Feed
}

func (s *fakeSource) Overview() Overview                      { return s.ov }
func (s *fakeSource) Policy() *policy.Policy                  { return s.pol }
func (s *fakeSource) Flows() []Flow                           { return s.flows }
func (s *fakeSource) Feed() *Feed                             { return s.feed }
func (s *fakeSource) Suggestions() (s2 []Suggestion, ok bool) { return nil, false }

var testNow = time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC)

func testPolicy(t testing.TB, file string) *policy.Policy {
	t.Helper()
	key := func(n byte) string {
		var k [32]byte
		k[0], k[31] = n, 0x5a
		return base64.StdEncoding.EncodeToString(k[:])
	}
	text := fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.1:443", "127.0.0.1:8000-8010"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]
ports = ["443/tcp"]

[[rule]]
name = "cover"
from = ["alice"]
to = ["console"]
expires = "2026-03-05T12:30:00Z"
reason = %q
`, key(1), key(2), hostile)
	p, err := policy.Parse(file, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestServer(t testing.TB) (*Server, *fakeSource) {
	src := &fakeSource{
		pol: testPolicy(t, hostile+".toml"),
		ov: Overview{Site: "leeds", PolicyFile: hostile + ".toml", Enforcing: true,
			Links: []Link{{Site: "york", LastError: hostile}}},
		flows: []Flow{{ID: "leeds-1", Identity: "alice", Service: "ehr", Proto: "tcp", Port: 443, Start: testNow.Add(-time.Minute)}},
		feed:  NewFeed(10),
	}
	src.feed.Publish(Decision{Time: testNow, Verdict: "deny", Identity: "alice", Service: "ehr", Reason: hostile,
		Dst: netip.MustParseAddrPort("100.81.0.1:8000"), Proto: "tcp"})
	return New(src, func() time.Time { return testNow }), src
}

func get(t testing.TB, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	return w
}

// Every response, pages, assets and errors alike, carries the strict CSP
// and never lets markup from the policy or the audit stream through.
func TestHeadersAndEscaping(t *testing.T) {
	s, _ := newTestServer(t)
	for _, target := range []string{"/", "/map", "/flows", "/explain?from=alice&to=ehr", "/grants", "/static/console.css", "/static/live.js", "/nope"} {
		w := get(t, s, target)
		if got := w.Header().Get("Content-Security-Policy"); got != csp {
			t.Errorf("%s: Content-Security-Policy %q, want %q", target, got, csp)
		}
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Fatalf("csp %q is not strict", csp)
		}
		body := w.Body.String()
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: hostile markup reached the page unescaped", target)
		}
		if strings.HasPrefix(target, "/static/") || target == "/nope" {
			continue
		}
		if w.Code != http.StatusOK {
			t.Errorf("%s: status %d", target, w.Code)
		}
		if inline.MatchString(body) {
			t.Errorf("%s: an inline script or style would be refused by the CSP", target)
		}
	}
	for target, where := range map[string]string{"/": "policy file and link error", "/flows": "decision reason", "/grants": "rule reason"} {
		if !strings.Contains(get(t, s, target).Body.String(), "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("%s: the %s is not shown, escaped", target, where)
		}
	}
}

// The map's cell for a known identity and service shows the open ports and
// the deciding rule, and links to explain; the console is a column too.
func TestMapCell(t *testing.T) {
	s, _ := newTestServer(t)
	body := get(t, s, "/map").Body.String()
	for _, want := range []string{
		"<td class=\"cell allow mixed\" title=\"alice → ehr\n443/tcp: allow by rule clinical-ehr\n8000-8010/tcp: deny (no-rule)\nicmp: deny (no-rule)\"><a href=\"/explain?from=alice&amp;port=443%2Ftcp&amp;to=ehr\">443/tcp<small>clinical-ehr</small></a></td>",
		"<td class=\"cell limited\" title=\"alice → console\n80/tcp: allow by rule cover until 2026-03-05T12:30:00Z\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("map lacks %s", want)
		}
	}
}

func TestExplainForm(t *testing.T) {
	s, _ := newTestServer(t)
	tests := []struct{ query, want string }{
		{"from=alice&to=ehr&port=443/tcp", `rule &#34;clinical-ehr&#34; lets group:clinical reach ehr on 443/tcp`},
		{"from=alice&to=ehr&port=8001/tcp", `no rule lets alice (groups clinical) reach ehr on 8001/tcp`},
		{"from=alice&to=ehr", `443/tcp`}, // the first port the service offers
		{"from=alise&to=ehr", `unknown identity &#34;alise&#34; (did you mean &#34;alice&#34;?)`},
		{"from=alice&to=console&at=2026-03-05T13:00:00Z", `it has expired`},
		{"from=alice&to=ehr&at=tomorrow", `time &#34;tomorrow&#34;: want RFC 3339`},
	}
	for _, tc := range tests {
		if body := get(t, s, "/explain?"+tc.query).Body.String(); !strings.Contains(body, tc.want) {
			t.Errorf("explain %s: page lacks %s", tc.query, tc.want)
		}
	}
}

// The grants page lists rules expiring after now with the time left.
func TestGrants(t *testing.T) {
	s, _ := newTestServer(t)
	body := get(t, s, "/grants").Body.String()
	if !strings.Contains(body, "<td>cover</td>") || !strings.Contains(body, "<td>2h 30m</td>") {
		t.Errorf("grants page lacks rule cover with 2h 30m left")
	}
	if !strings.Contains(body, "does not propose rules") {
		t.Errorf("grants page does not say that suggestions are unavailable")
	}
}

// A decision published after the event stream opened arrives on it,
// filtered, after the flow table.
func TestEvents(t *testing.T) {
	s, src := newTestServer(t)
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/events?verdict=audit")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	readEvent := func() (string, string) {
		var event, data string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			switch {
			case line == "\n":
				return event, data
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimSpace(line[7:])
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimSpace(line[6:])
			}
		}
	}
	if ev, data := readEvent(); ev != "flows" || !strings.Contains(data, `"id":"leeds-1"`) {
		t.Fatalf("first event %s %s, want the flow table", ev, data)
	}
	src.feed.Publish(Decision{Verdict: "deny", Identity: "filtered-out"})
	src.feed.Publish(Decision{Verdict: "audit", Identity: "alice", Service: "ehr", Rule: "r"})
	for {
		ev, data := readEvent()
		if ev != "decision" {
			continue
		}
		if !strings.Contains(data, `"identity":"alice"`) || !strings.Contains(data, `"verdict":"audit"`) {
			t.Fatalf("decision event %s, want alice's audit (the deny is filtered out)", data)
		}
		break
	}
	resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
}

// The map writes its cells without the template: what it writes is
// escaped all the same.
func TestMapCellEscaped(t *testing.T) {
	var b strings.Builder
	mapCell{Cell: Cell{State: StateAllow}, Title: hostile, Text: hostile, Rule: "<b>", Href: `/explain?from="x"&to=<y>`}.html(&b)
	want := `<td class="cell allow" title="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;">` +
		`<a href="/explain?from=&#34;x&#34;&amp;to=&lt;y&gt;">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;<small>&lt;b&gt;</small></a></td>`
	if b.String() != want {
		t.Errorf("cell\n%s\nwant\n%s", b.String(), want)
	}
}
