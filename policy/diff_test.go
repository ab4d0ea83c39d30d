package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// diffBase has alice (radiology) and bob (admin), pacs on tcp 443 and
// 8000-8010, ehr on udp 5000; alice may reach pacs.
var diffBase = fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["radiology"]

[[identity]]
name = "bob"
key = %q
address = "100.80.1.11"
site = "leeds"
groups = ["admin"]

[[service]]
name = "pacs"
site = "leeds"
endpoints = ["127.0.0.10:443", "127.0.0.10:8000-8010"]

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.11:5000/udp"]

[[rule]]
name = "radiology-pacs"
from = ["group:radiology"]
to = ["pacs"]
`, testKey(1), testKey(2), testKey(3))

func TestDiff(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		old, new string
		want     []string // "+|- identity service ports rule reason"
	}{
		{"no change", diffBase, diffBase + "\n# a comment\n", nil},
		{"a rule grants", diffBase, diffBase + "[[rule]]\nname = \"alice-ehr\"\nfrom = [\"alice\"]\nto = [\"ehr\"]\n",
			[]string{"+ alice ehr 5000/udp alice-ehr no-rule", "+ alice ehr icmp alice-ehr no-rule"}},
		{"ports narrowed", diffBase, strings.Replace(diffBase, "to = [\"pacs\"]\n", "to = [\"pacs\"]\nports = [\"443/tcp\"]\n", 1),
			[]string{"- alice pacs 8000-8010/tcp radiology-pacs no-rule", "- alice pacs icmp radiology-pacs no-rule"}},
		{"group membership", diffBase, strings.Replace(diffBase, `groups = ["admin"]`, `groups = ["admin", "radiology"]`, 1),
			[]string{"+ bob pacs 443/tcp radiology-pacs no-rule", "+ bob pacs 8000-8010/tcp radiology-pacs no-rule", "+ bob pacs icmp radiology-pacs no-rule"}},
		{"a deny rule", diffBase, diffBase + "[[rule]]\nname = \"no-legacy\"\naction = \"deny\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nports = [\"8005-8006/tcp\"]\n",
			[]string{"- alice pacs 8005-8006/tcp radiology-pacs deny-rule"}},
		{"a service offers more", diffBase, strings.Replace(diffBase, `"127.0.0.10:8000-8010"]`, `"127.0.0.10:8000-8010", "127.0.0.10:8443"]`, 1),
			[]string{"+ alice pacs 8443/tcp radiology-pacs no-service"}},
		{"an identity renamed", diffBase, strings.Replace(diffBase, "name = \"alice\"", "name = \"carol\"", 1),
			[]string{
				"- alice pacs 443/tcp radiology-pacs unknown-identity", "- alice pacs 8000-8010/tcp radiology-pacs unknown-identity", "- alice pacs icmp radiology-pacs unknown-identity",
				"+ carol pacs 443/tcp radiology-pacs unknown-identity", "+ carol pacs 8000-8010/tcp radiology-pacs unknown-identity", "+ carol pacs icmp radiology-pacs unknown-identity",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, err := Parse("old.toml", []byte(tc.old))
			if err != nil {
				t.Fatal(err)
			}
			new, err := Parse("new.toml", []byte(tc.new))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range Diff(old, new, at) {
				sign := "-"
				if c.Gained {
					sign = "+"
				}
				got = append(got, strings.Join([]string{sign, c.Identity, c.Service, c.Port, c.Rule, c.Reason}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			// The stretches agree with deciding every port.
			if g, l := portByPort(old, new, at); g != countPorts(Diff(old, new, at), true) || l != countPorts(Diff(old, new, at), false) {
				t.Errorf("port by port: %d gained, %d lost; Diff says %d, %d", g, l, countPorts(Diff(old, new, at), true), countPorts(Diff(old, new, at), false))
			}
		})
	}
}

func countPorts(cs []AccessChange, gained bool) int {
	n := 0
	for _, c := range cs {
		if c.Gained == gained {
			n += int(c.Ports.Hi) - int(c.Ports.Lo) + 1
		}
	}
	return n
}

// portByPort counts the ports gained and lost by deciding each one.
func portByPort(old, new *Policy, at time.Time) (gained, lost int) {
	ok := func(p *Policy, id, svc string, port uint16, proto Proto) bool {
		i, s := p.Identity(id), p.Service(svc)
		return i != nil && s != nil && s.Offers(port, proto) && p.Decide(i, s, port, proto, at).Allowed()
	}
	for _, id := range []string{"alice", "bob", "carol"} {
		for _, svc := range []string{"pacs", "ehr"} {
			check := func(port uint16, proto Proto) {
				switch o, n := ok(old, id, svc, port, proto), ok(new, id, svc, port, proto); {
				case n && !o:
					gained++
				case o && !n:
					lost++
				}
			}
			for port := range 65536 {
				check(uint16(port), ProtoTCP)
				check(uint16(port), ProtoUDP)
			}
			check(0, ProtoICMP)
		}
	}
	return gained, lost
}
