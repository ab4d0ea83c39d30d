package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestLookups(t *testing.T) {
	p, err := Parse("sem.toml", []byte(semanticsTOML+`
[[identity]]
name = "ct-room"
source = "192.168.20.16/28"
site = "york"

[[service]]
name = "lan-web"
site = "york"
vip = "100.81.7.7"
endpoints = ["10.9.0.0/16:80-90", "10.9.1.0/24:8080/udp"]
dns = ["Web.York.Example."]

[[service]]
name = "nhs-web"
egress = ["*.nhs.uk", "**.nhs.net"]
ports = ["443/tcp"]

[[service]]
name = "mail"
egress = ["mail.nhs.net"]
ports = ["443/tcp"]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	if id := p.IdentityByAddr(a("100.80.1.2")); id == nil || id.Name != "nurse" {
		t.Errorf("IdentityByAddr: %v", id)
	}
	if id := p.IdentityByAddr(a("::ffff:100.80.1.2")); id == nil || id.Name != "nurse" {
		t.Errorf("IdentityByAddr 4in6: %v", id)
	}
	if id := p.IdentityByAddr(a("100.80.0.1")); id != nil {
		t.Errorf("IdentityByAddr of a site: %v", id)
	}
	if s := p.SiteByAddr(a("100.80.0.2")); s == nil || s.Name != "york" {
		t.Errorf("SiteByAddr: %v", s)
	}
	for _, c := range []struct{ site, addr, want string }{
		{"york", "192.168.20.13", "mri"},
		{"york", "192.168.20.17", "ct-room"},
		{"york", "192.168.20.14", ""},
		{"leeds", "192.168.20.13", ""},
		{"york", "192.168.21.1", ""},
	} {
		got := ""
		if id := p.IdentityBySource(c.site, a(c.addr)); id != nil {
			got = id.Name
		}
		if got != c.want {
			t.Errorf("IdentityBySource(%s, %s) = %q, want %q", c.site, c.addr, got, c.want)
		}
	}
	for _, c := range []struct {
		dst   string
		proto Proto
		want  string
	}{
		{"100.81.7.7:1", ProtoTCP, "lan-web"}, // a VIP matches on any port
		{p.Service("pacs").VIP.String() + ":443", ProtoTCP, "pacs"},
		{"127.0.0.10:443", ProtoTCP, "pacs"},
		{"127.0.0.10:4003", ProtoUDP, "pacs"},
		{"127.0.0.10:4003", ProtoTCP, ""},
		{"127.0.0.10:444", ProtoTCP, ""},
		{"10.9.3.4:85", ProtoTCP, "lan-web"},
		{"10.9.1.4:8080", ProtoUDP, "lan-web"},
		{"10.9.1.4:8080", ProtoTCP, ""},
		{"10.10.0.1:80", ProtoTCP, ""},
	} {
		got := ""
		if s := p.ServiceByDst(netip.MustParseAddrPort(c.dst), c.proto); s != nil {
			got = s.Name
		}
		if got != c.want {
			t.Errorf("ServiceByDst(%s/%s) = %q, want %q", c.dst, c.proto, got, c.want)
		}
	}
	for _, c := range []struct{ name, want string }{
		{"pacs.nhs.internal", "pacs"},
		{"PACS.NHS.Internal.", "pacs"},
		{"web.york.example", "lan-web"},
		{"web.york.example.", "lan-web"},
		{"pacs", ""},
		{"nhs-web.nhs.internal", "nhs-web"},
		{"x.pacs.nhs.internal", ""},
	} {
		got := ""
		if s := p.ServiceByName(c.name); s != nil {
			got = s.Name
		}
		if got != c.want {
			t.Errorf("ServiceByName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		want []string
	}{
		{"www.nhs.uk", []string{"nhs-web"}},
		{"WWW.NHS.UK.", []string{"nhs-web"}},
		{"a.b.nhs.uk", nil},
		{"nhs.uk", nil},
		{"mail.nhs.net", []string{"nhs-web", "mail"}},
		{"x.mail.nhs.net", []string{"nhs-web"}},
		{"nhs.net", nil},
	} {
		var got []string
		for _, s := range p.EgressServices(c.name) {
			got = append(got, s.Name)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("EgressServices(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	if got := fmt.Sprint(p.Groups()); got != "[clinical device it radiology]" {
		t.Errorf("Groups() = %s", got)
	}
	if p.Site("york") == nil || p.Identity("rad") == nil || p.Service("pacs") == nil || p.Site("x") != nil {
		t.Error("by-name accessors")
	}
	for i, id := range p.Identities() {
		if id.ID != i {
			t.Errorf("identity %s has ID %d at index %d", id.Name, id.ID, i)
		}
	}
	for i, s := range p.Services() {
		if s.ID != i {
			t.Errorf("service %s has ID %d at index %d", s.Name, s.ID, i)
		}
	}
	if len(p.Hash()) != 16 || p.File() != "sem.toml" || p.Overlay().Domain != "nhs.internal" {
		t.Errorf("Hash %q File %q Overlay %+v", p.Hash(), p.File(), p.Overlay())
	}
}

func TestStrings(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{ProtoTCP.String(), "tcp"}, {ProtoUDP.String(), "udp"}, {ProtoICMP.String(), "icmp"},
		{Allow.String(), "allow"}, {Deny.String(), "deny"},
		{ReasonNone.String(), ""}, {ReasonNoRule.String(), "no-rule"}, {ReasonDenyRule.String(), "deny-rule"},
		{ReasonNoService.String(), "no-service"}, {ReasonUnknownIdentity.String(), "unknown-identity"},
		{ReasonOutsideTimeWindow.String(), "outside-time-window"},
		{PortRange{ProtoTCP, 443, 443}.String(), "443/tcp"},
		{PortRange{ProtoUDP, 5000, 5010}.String(), "5000-5010/udp"},
		{PortRange{Proto: ProtoICMP}.String(), "icmp"},
		{Problem{File: "p.toml", Line: 3, Col: 1, Msg: "x"}.Error(), "p.toml:3:1: x"},
		{Problem{File: "p.toml", Msg: "x"}.Error(), "p.toml: x"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
