package console

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// largePolicy has 500 identities in 20 groups over 5 sites, 100 services
// and a rule per group.
func largePolicy(t testing.TB) *policy.Policy {
	t.Helper()
	key := func(n int) string {
		var k [32]byte
		k[0], k[1], k[31] = byte(n), byte(n>>8), 0x5a
		return base64.StdEncoding.EncodeToString(k[:])
	}
	var b strings.Builder
	b.WriteString("[overlay]\nprefix = \"100.80.0.0/16\"\nservice_prefix = \"100.81.0.0/16\"\ndomain = \"test.internal\"\n")
	for s := range 5 {
		fmt.Fprintf(&b, "\n[[site]]\nname = \"site%d\"\nkey = %q\naddress = \"100.80.0.%d\"\n", s, key(1000+s), s+1)
	}
	for i := range 500 {
		fmt.Fprintf(&b, "\n[[identity]]\nname = \"id%03d\"\nkey = %q\naddress = \"100.80.%d.%d\"\nsite = \"site%d\"\ngroups = [\"g%d\"]\n", i, key(i), 1+i/200, i%200+1, i%5, i%20)
	}
	for i := range 100 {
		fmt.Fprintf(&b, "\n[[service]]\nname = \"svc%03d\"\nsite = \"site%d\"\nendpoints = [\"127.0.%d.1:443\", \"127.0.%d.1:8000-8100\"]\n", i, i%5, i, i)
	}
	for g := range 20 {
		fmt.Fprintf(&b, "\n[[rule]]\nname = \"g%d\"\nfrom = [\"group:g%d\"]\nto = [\"svc%03d\", \"svc%03d\"]\nports = [\"443/tcp\", \"8050/tcp\"]\n", g, g, g, g+50)
	}
	p, err := policy.Parse("large.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// With 500 identities and 100 services the map shows a page of rows with
// every column, pages on, and narrows by filter.
func TestMapLarge(t *testing.T) {
	src := &fakeSource{pol: largePolicy(t), feed: NewFeed(1), ov: Overview{Enforcing: true}}
	s := New(src, func() time.Time { return testNow })
	body := get(t, s, "/map").Body.String()
	if got := strings.Count(body, `<th scope="row"`); got != maxRows {
		t.Errorf("first page has %d rows, want %d", got, maxRows)
	}
	if !strings.Contains(body, "Rows 1–150 of 500") || !strings.Contains(body, `href="/map?by=site&amp;page=1"`) {
		t.Errorf("first page does not say where it is or link the next")
	}
	if got := strings.Count(body, `<th class="svc"`); got != 101 {
		t.Errorf("%d service columns, want 100 and the console", got)
	}
	body = get(t, s, "/map?group=g7&service=svc00&by=group").Body.String()
	if got := strings.Count(body, `<th scope="row"`); got != 25 {
		t.Errorf("group g7 shows %d rows, want its 25 members", got)
	}
	if !strings.Contains(body, "group g7") || strings.Count(body, `<th class="svc"`) != 10 {
		t.Errorf("filter by group and service name did not narrow rows and columns")
	}
	if !strings.Contains(body, `<a href="/explain?from=id007&amp;port=443%2Ftcp&amp;to=svc007">443/tcp 8050/tcp<small>g7</small></a>`) {
		t.Errorf("id007's cell for svc007 does not show its two open ports")
	}
}

// BenchmarkMapPage renders the first page of the 500 x 100 map.
func BenchmarkMapPage(b *testing.B) {
	src := &fakeSource{pol: largePolicy(b), feed: NewFeed(1), ov: Overview{Enforcing: true}}
	s := New(src, func() time.Time { return testNow })
	for b.Loop() {
		get(b, s, "/map")
	}
}
