package policy

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
)

// testKey returns a distinct, valid-looking base64 key for n.
func testKey(n int) string {
	var k [32]byte
	binary.BigEndian.PutUint64(k[:8], uint64(n)+1)
	k[31] = 0x5a
	return base64.StdEncoding.EncodeToString(k[:])
}

// genSpec sizes a generated policy.
type genSpec struct {
	sites, identities, lan, groups, services, egress, rules int
	windows                                                 bool // some rules get time windows
	expiry                                                  bool // some rules expire
	denies                                                  bool // some rules deny
}

// genItems is a generated policy as separate TOML blocks, so tests can
// shuffle the order of each table.
type genItems struct {
	header                                    string
	sites, identities, services, rules, tests []string
}

func (g genItems) text() string {
	var b strings.Builder
	b.WriteString(g.header)
	for _, l := range [][]string{g.sites, g.identities, g.services, g.rules, g.tests} {
		for _, s := range l {
			b.WriteString(s)
		}
	}
	return b.String()
}

var genPorts = []string{"443/tcp", "80/tcp", "8443/tcp", "104/tcp", "5000-5010/udp", "53/udp", "3389/tcp", "22/tcp"}

var genWindows = []string{
	"mon-fri 07:00-20:00 Europe/London",
	"sat,sun",
	"fri 22:00-06:00 Europe/London",
	"22:00-06:00",
	"tue-thu 09:00-17:30 America/New_York",
	"fri-mon 00:00-12:00 Asia/Kolkata",
}

// genExpiries fall before, inside and after the probe times of
// random_test.go (one exactly on a probe), and one far ahead.
var genExpiries = []string{
	"2026-03-20T00:00:00Z",
	"2026-03-27T00:00:00Z",
	"2026-03-28T02:00:00Z",
	"2026-03-29T12:00:00+01:00",
	"2099-01-01T00:00:00Z",
}

// genPolicy generates a realistic policy: identities in a few groups at
// some site, services with one to three endpoints, rules from groups,
// sites, identities or everyone to one or a few services, on some of
// their ports.
func genPolicy(rng *rand.Rand, s genSpec) genItems {
	var g genItems
	g.header = "[overlay]\nprefix = \"100.64.0.0/10\"\nservice_prefix = \"10.128.0.0/9\"\ndomain = \"trust.internal\"\n\n"
	for i := 0; i < s.sites; i++ {
		g.sites = append(g.sites, fmt.Sprintf("[[site]]\nname = \"site%d\"\nkey = %q\naddress = \"100.64.0.%d\"\nendpoint = \"gw%d.example:51820\"\n\n", i, testKey(1_000_000+i), i+1, i))
	}
	usedGroup := map[int]bool{}
	var groupsUsed []int
	groupsOf := func() string {
		n := min(1+rng.IntN(3), s.groups)
		var gs []string
		seen := map[int]bool{}
		for len(gs) < n {
			x := rng.IntN(s.groups)
			if !seen[x] {
				seen[x] = true
				if !usedGroup[x] {
					usedGroup[x] = true
					groupsUsed = append(groupsUsed, x)
				}
				gs = append(gs, fmt.Sprintf("%q", fmt.Sprintf("group%d", x)))
			}
		}
		return strings.Join(gs, ", ")
	}
	for i := 0; i < s.identities; i++ {
		site := rng.IntN(s.sites)
		if i < s.lan {
			g.identities = append(g.identities, fmt.Sprintf("[[identity]]\nname = \"lan%d\"\nsource = \"192.168.%d.%d/32\"\nsite = \"site%d\"\ngroups = [%s]\n\n", i, i/256, i%256, site, groupsOf()))
			continue
		}
		a := 256 + i
		g.identities = append(g.identities, fmt.Sprintf("[[identity]]\nname = \"id%d\"\nkey = %q\naddress = \"100.64.%d.%d\"\nsite = \"site%d\"\ngroups = [%s]\n\n", i, testKey(i), a/256, a%256, site, groupsOf()))
	}
	for i := 0; i < s.services; i++ {
		if i < s.egress {
			g.services = append(g.services, fmt.Sprintf("[[service]]\nname = \"egress%d\"\negress = [\"*.e%d.example.org\", \"**.f%d.example.net\"]\nports = [\"443/tcp\", \"8443/tcp\"]\n\n", i, i, i))
			continue
		}
		n := 1 + rng.IntN(3)
		var eps []string
		used := map[string]bool{}
		for j := 0; j < n; j++ {
			pt := genPorts[rng.IntN(len(genPorts))]
			if used[pt] {
				continue
			}
			used[pt] = true
			eps = append(eps, fmt.Sprintf("\"10.%d.%d.%d:%s\"", i/65536%256, i/256%256, i%256, pt))
		}
		vip := ""
		if rng.IntN(4) == 0 {
			vip = fmt.Sprintf("vip = \"10.200.%d.%d\"\n", i/256%256, i%256+0)
			if i%256 == 0 {
				vip = fmt.Sprintf("vip = \"10.201.%d.1\"\n", i/256%256)
			}
		}
		g.services = append(g.services, fmt.Sprintf("[[service]]\nname = \"svc%d\"\nsite = \"site%d\"\n%sendpoints = [%s]\n\n", i, rng.IntN(s.sites), vip, strings.Join(eps, ", ")))
	}
	svcName := func(i int) string {
		if i < s.egress {
			return fmt.Sprintf("egress%d", i)
		}
		return fmt.Sprintf("svc%d", i)
	}
	idName := func(i int) string {
		if i < s.lan {
			return fmt.Sprintf("lan%d", i)
		}
		return fmt.Sprintf("id%d", i)
	}
	for i := 0; i < s.rules; i++ {
		var from []string
		for j := 0; j < 1+rng.IntN(2); j++ {
			// Rules from or to "*" are few in a real policy (no-smb, DNS
			// for everyone): about five, whatever its size.
			switch x := rng.IntN(20); {
			case rng.IntN(s.rules+1) < 4:
				from = append(from, `"*"`)
			case x < 3:
				from = append(from, fmt.Sprintf(`"site:site%d"`, rng.IntN(s.sites)))
			case x < 12:
				from = append(from, fmt.Sprintf(`"group:group%d"`, groupsUsed[rng.IntN(len(groupsUsed))]))
			default:
				from = append(from, fmt.Sprintf("%q", idName(rng.IntN(s.identities))))
			}
		}
		var to []string
		if rng.IntN(s.rules+1) < 4 {
			to = append(to, `"*"`)
		} else {
			for j := 0; j < 1+rng.IntN(2); j++ {
				to = append(to, fmt.Sprintf("%q", svcName(rng.IntN(s.services))))
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "[[rule]]\nname = \"rule%d\"\n", i)
		deny := s.denies && rng.IntN(8) == 0
		if deny {
			b.WriteString("action = \"deny\"\n")
		}
		fmt.Fprintf(&b, "from = [%s]\nto = [%s]\n", strings.Join(from, ", "), strings.Join(to, ", "))
		if rng.IntN(3) > 0 {
			var ps []string
			for j := 0; j < 1+rng.IntN(2); j++ {
				ps = append(ps, fmt.Sprintf("%q", genPorts[rng.IntN(len(genPorts))]))
			}
			if rng.IntN(10) == 0 {
				ps = append(ps, `"icmp"`)
			}
			fmt.Fprintf(&b, "ports = [%s]\n", strings.Join(ps, ", "))
		}
		if s.windows && rng.IntN(5) == 0 {
			fmt.Fprintf(&b, "when = %q\n", genWindows[rng.IntN(len(genWindows))])
		}
		if s.expiry && rng.IntN(4) == 0 {
			fmt.Fprintf(&b, "expires = %q\n", genExpiries[rng.IntN(len(genExpiries))])
		}
		if deny && rng.IntN(3) == 0 {
			b.WriteString("audit = true\n")
		}
		b.WriteString("\n")
		g.rules = append(g.rules, b.String())
	}
	return g
}
