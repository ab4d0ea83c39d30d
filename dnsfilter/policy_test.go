package dnsfilter

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/policy"
)

// testPolicy is a real policy: alice (radiology) reaches pacs and the NHS
// web, bob (admin) reaches nothing but the web, carol nothing at all.
const testPolicy = `
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = "LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU="
address = "100.80.0.1"

[[identity]]
name = "alice"
key = "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
address = "100.80.1.10"
site = "leeds"
groups = ["radiology"]

[[identity]]
name = "bob"
key = "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="
address = "100.80.1.11"
site = "leeds"
groups = ["admin"]

[[identity]]
name = "carol"
key = "JjnSMBVolkPN8+70KChPBjqnkyKVmrpajkADd2JIwGE="
address = "100.80.1.12"
site = "leeds"
groups = ["guest"]

[[service]]
name = "pacs"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["192.168.5.10:443"]
dns = ["pacs.leeds.example"]

[[service]]
name = "nhs-web"
egress = ["*.nhs.uk"]
ports = ["443/tcp"]

[[rule]]
name = "radiology-reads-pacs"
from = ["group:radiology"]
to = ["pacs"]
when = "mon-fri 07:00-20:00 Europe/London"

[[rule]]
name = "web"
from = ["group:radiology", "group:admin"]
to = ["nhs-web"]
`

func parsePolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWithRealPolicy(t *testing.T) {
	p := parsePolicy(t)
	up := nhsUpstream(t, 300)
	audit := &auditBuf{}
	f, err := New(Config{
		Policy:    func() *policy.Policy { return p },
		Upstreams: []string{up.Addr},
		Audit:     audit.logger(),
		QueryLog:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	from := func(a string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(a), Port: 5353} }
	alice, bob, carol := from("100.80.1.10"), from("100.80.1.11"), from("100.80.1.12")
	for _, tc := range []struct {
		who   net.Addr
		name  string
		rcode int
		want  []string
	}{
		{alice, "pacs.nhs.internal", dns.RcodeSuccess, []string{"100.81.0.10"}}, // time window: CanReach at some time
		{alice, "pacs.leeds.example", dns.RcodeSuccess, []string{"100.81.0.10"}},
		{bob, "pacs.nhs.internal", dns.RcodeNameError, nil},
		{carol, "pacs.leeds.example", dns.RcodeNameError, nil},
		{alice, "nothing.nhs.internal", dns.RcodeNameError, nil},
		{alice, "www.nhs.uk", dns.RcodeSuccess, []string{"CNAME cdn.example.net.", "93.184.216.34"}},
		{bob, "www.nhs.uk", dns.RcodeSuccess, []string{"CNAME cdn.example.net.", "93.184.216.34"}},
		{carol, "www.nhs.uk", dns.RcodeSuccess, []string{"CNAME cdn.example.net.", "93.184.216.34"}},
		{from("100.80.9.9"), "www.nhs.uk", dns.RcodeRefused, nil},
	} {
		m := ask(t, f, tc.who, tc.name, dns.TypeA)
		got := answers(m)
		if m.Rcode != tc.rcode || len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
			t.Errorf("%v %s: %s %v, want %s %v", tc.who, tc.name, dns.RcodeToString[m.Rcode], got, dns.RcodeToString[tc.rcode], tc.want)
		}
	}
	cdn := netip.MustParseAddr("93.184.216.34")
	for name, want := range map[string]bool{"alice": true, "bob": true, "carol": false} {
		s := f.EgressService(p.Identity(name), cdn, 443, policy.ProtoTCP)
		if (s != nil) != want || s != nil && s.Name != "nhs-web" {
			t.Errorf("%s: EgressService = %v, want %v", name, s, want)
		}
	}
	// The flow handler then decides as for any service.
	svc := f.EgressService(p.Identity("alice"), cdn, 443, policy.ProtoTCP)
	if d := p.Decide(p.Identity("alice"), svc, 443, policy.ProtoTCP, f.now()); !d.Allowed() {
		t.Errorf("Decide on the learned egress service: %+v", d)
	}
	if n := len(audit.events(t)); n != 8 {
		t.Errorf("%d dns.query events, want 8 (one per answered identity)", n)
	}
}

func TestExampleBlocklist(t *testing.T) {
	bl, err := loadBlocklists([]string{filepath.Join("..", "configs", "example", "blocklists", "malware.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if bl.names.Len() == 0 {
		t.Error("example blocklist is empty")
	}
}
