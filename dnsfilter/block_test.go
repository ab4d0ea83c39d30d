package dnsfilter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := writeFileErr(p, text); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFileErr(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }

const testList = `# a plain list
ads.example.com
Tracker.Example.NET.   # trailing dot and case
*.pixel.example
**.malware.example

# hosts format
0.0.0.0 hosts-one.example hosts-two.example
127.0.0.1 localhost
::1 ip6-localhost
0.0.0.0 0.0.0.0
`

func TestLoadBlocklists(t *testing.T) {
	bl, err := loadBlocklists([]string{writeFile(t, "list.txt", testList)})
	if err != nil {
		t.Fatal(err)
	}
	if n := bl.names.Len(); n != 6 {
		t.Errorf("%d entries, want 6", n)
	}
	for name, want := range map[string]bool{
		"ads.example.com": true, "tracker.example.net": true, "a.pixel.example": true,
		"a.b.pixel.example": false, "x.y.malware.example": true, "malware.example": false,
		"hosts-one.example": true, "hosts-two.example": true, "localhost": false, "example.com": false,
	} {
		if got := bl.names.Match(name) != ""; got != want {
			t.Errorf("%s blocked = %v, want %v", name, got, want)
		}
	}
}

func TestLoadBlocklistsErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"ok.example\nbad name here\n", "bad.txt:2: more than one name"},
		{"ok.example\n\n||ads.example^\n", `bad.txt:3: FQDN pattern "||ads.example^"`},
		{"0.0.0.0\n", "bad.txt:1: hosts line"},
		{"a.*.b\n", `bad.txt:1: FQDN pattern "a.*.b": a wildcard may only be the whole first label`},
		// The rules of policy egress patterns (internal/dnsname).
		{"*.org\n", `bad.txt:1: FQDN pattern "*.org": a wildcard needs at least two labels after it`},
		{"0.0.0.0 ok.example -ads.example\n", `bad.txt:1: FQDN pattern "-ads.example": DNS name "-ads.example": label "-ads" starts or ends with '-'`},
	} {
		_, err := loadBlocklists([]string{writeFile(t, "bad.txt", tc.text)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
	if _, err := loadBlocklists([]string{"/nonexistent/list"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/list") {
		t.Errorf("missing file: %v", err)
	}
}

func TestBlockStage(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, audit := newTestFilter(t, Config{
		Upstreams:  []string{up.Addr},
		Blocklists: []string{writeFile(t, "list.txt", testList)},
	}, testView())
	m := ask(t, f, aliceAddr, "X.Pixel.Example.", dns.TypeA)
	if m.Rcode != dns.RcodeNameError {
		t.Fatalf("blocked name: rcode %s", dns.RcodeToString[m.Rcode])
	}
	if up.Queries.Load() != 0 {
		t.Error("blocked name was forwarded")
	}
	ev := audit.events(t)
	if len(ev) != 1 || ev[0]["msg"] != "dns.block" || ev[0]["identity"] != "alice" || ev[0]["site"] != "leeds" ||
		ev[0]["qname"] != "x.pixel.example" || ev[0]["qtype"] != "A" || ev[0]["rcode"] != "NXDOMAIN" || ev[0]["rule"] != "*.pixel.example" {
		t.Errorf("audit: %v", ev)
	}
	// Not on the list: forwarded, and not logged without QueryLog.
	if m := ask(t, f, aliceAddr, "example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("unlisted name: %v", m)
	}
	if n := len(audit.events(t)); n != 1 {
		t.Errorf("%d audit events, want 1", n)
	}
}

func TestReloadBlocklists(t *testing.T) {
	up := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	f, _, _ := newTestFilter(t, Config{Upstreams: []string{up.Addr}}, testView())
	if m := ask(t, f, aliceAddr, "ads.example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("before reload: %s", dns.RcodeToString[m.Rcode])
	}
	good := writeFile(t, "good.txt", "ads.example.com\n")
	bl, err := LoadBlocklists([]string{good})
	if err != nil {
		t.Fatal(err)
	}
	if m := ask(t, f, aliceAddr, "ads.example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("loading lists put them in force: %s", dns.RcodeToString[m.Rcode])
	}
	f.SetBlocklists(bl)
	if m := ask(t, f, aliceAddr, "ads.example.com", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Fatalf("after reload: %s", dns.RcodeToString[m.Rcode])
	}
	if _, err := LoadBlocklists([]string{good, writeFile(t, "bad.txt", "a b\n")}); err == nil || !strings.Contains(err.Error(), "bad.txt:1") {
		t.Fatalf("bad list: %v", err)
	}
	if m := ask(t, f, aliceAddr, "ads.example.com", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Fatalf("a failed reload changed the lists: %s", dns.RcodeToString[m.Rcode])
	}
}
