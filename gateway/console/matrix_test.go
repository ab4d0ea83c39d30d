package console

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// genPolicy writes a random policy: a few sites, identities in random
// groups, services with overlapping port ranges, and rules of every kind
// (allow and deny, audit, ports that split the services' ranges, windows,
// expiries on both sides of the probe times, "*" and the console).
func genPolicy(r *rand.Rand) string {
	key := func(n int) string {
		var k [32]byte
		k[0], k[1], k[31] = byte(n), byte(n>>8), 0x5a
		return base64.StdEncoding.EncodeToString(k[:])
	}
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	var b strings.Builder
	b.WriteString("groups = [\"clinical\", \"radiology\", \"it\"]\n[overlay]\nprefix = \"100.80.0.0/16\"\nservice_prefix = \"100.81.0.0/16\"\ndomain = \"test.internal\"\n")
	sites := []string{"leeds", "york"}[:1+r.IntN(2)]
	for i, s := range sites {
		fmt.Fprintf(&b, "\n[[site]]\nname = %q\nkey = %q\naddress = \"100.80.0.%d\"\n", s, key(1000+i), i+1)
	}
	groups := []string{"clinical", "radiology", "it"}
	nIDs := 3 + r.IntN(10)
	var from []string
	for i := range nIDs {
		name := fmt.Sprintf("id%d", i)
		from = append(from, name)
		var gs []string
		for _, g := range groups {
			if r.IntN(2) == 0 {
				gs = append(gs, fmt.Sprintf("%q", g))
			}
		}
		fmt.Fprintf(&b, "\n[[identity]]\nname = %q\nkey = %q\naddress = \"100.80.1.%d\"\nsite = %q\ngroups = [%s]\n", name, key(i), 10+i, pick(sites), strings.Join(gs, ", "))
	}
	from = append(from, "*", "group:clinical", "group:radiology", "group:it", "site:"+sites[0])
	endpointPorts := []string{"443", "80", "104", "4000-4010/udp", "5000-5100", "53/udp", "22"}
	nSvc := 2 + r.IntN(6)
	to := []string{"*", "console"}
	for i := range nSvc {
		name := fmt.Sprintf("svc%d", i)
		to = append(to, name)
		var eps []string
		for j := range 1 + r.IntN(3) {
			eps = append(eps, fmt.Sprintf("\"127.0.%d.%d:%s\"", i, j+1, pick(endpointPorts)))
		}
		fmt.Fprintf(&b, "\n[[service]]\nname = %q\nsite = %q\nendpoints = [%s]\n", name, pick(sites), strings.Join(eps, ", "))
	}
	rulePorts := []string{"443/tcp", "80/tcp", "4005/udp", "4000-4003/udp", "5050-5200/tcp", "5000-5010/tcp", "icmp", "53/udp", "22/tcp"}
	windows := []string{"mon-fri 07:00-20:00 Europe/London", "sat,sun", "22:00-06:00"}
	expiries := []string{"2026-03-01T00:00:00Z", "2026-03-10T12:00:00Z", "2027-01-01T00:00:00Z"}
	for i := range 3 + r.IntN(12) {
		fmt.Fprintf(&b, "\n[[rule]]\nname = \"r%d\"\nfrom = [%q]\nto = [%q]\n", i, pick(from), pick(to))
		deny := r.IntN(4) == 0
		if deny {
			b.WriteString("action = \"deny\"\n")
			if r.IntN(3) == 0 {
				b.WriteString("audit = true\n")
			}
		}
		if r.IntN(2) == 0 {
			var ps []string
			for range 1 + r.IntN(3) {
				ps = append(ps, fmt.Sprintf("%q", pick(rulePorts)))
			}
			fmt.Fprintf(&b, "ports = [%s]\n", strings.Join(ps, ", "))
		}
		if r.IntN(5) == 0 {
			fmt.Fprintf(&b, "when = %q\n", pick(windows))
		}
		if r.IntN(5) == 0 {
			fmt.Fprintf(&b, "expires = %q\n", pick(expiries))
		}
	}
	return b.String()
}

// Every cell of the map agrees with policy.Decide: its segments tile the
// ports the service offers (ICMP echo last), and every port of a segment,
// probed at both ends and at random inside, gets the segment's decision.
func TestMatrixAgreesWithDecide(t *testing.T) {
	probes := []time.Time{
		time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC),  // a Thursday morning, before one expiry
		time.Date(2026, 3, 14, 23, 0, 0, 0, time.UTC), // a Saturday night, after it
	}
	policies := 0
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		text := genPolicy(r)
		p, err := policy.Parse(fmt.Sprintf("seed-%d.toml", seed), []byte(text))
		if err != nil {
			continue // an unlucky draw (a rule whose ports no service offers is fine; clashes are not)
		}
		policies++
		for _, at := range probes {
			m := newMapper(p, at)
			for _, id := range p.Identities() {
				for _, svc := range append(p.Services()[:len(p.Services()):len(p.Services())], p.Console()) {
					checkCell(t, r, p, m.cell(id, svc), id, svc, at, text)
				}
			}
		}
	}
	if policies < 200 {
		t.Fatalf("only %d of 300 random policies loaded; the generator is off", policies)
	}
}

func checkCell(t *testing.T, r *rand.Rand, p *policy.Policy, c Cell, id *policy.Identity, svc *policy.Service, at time.Time, text string) {
	t.Helper()
	want := append(append([]policy.PortRange(nil), svc.Ports...), policy.PortRange{Proto: policy.ProtoICMP})
	i := 0
	for _, o := range want {
		next := uint32(o.Lo)
		for next <= uint32(o.Hi) {
			if i >= len(c.Segments) {
				t.Fatalf("%s -> %s: segments %v end before %s\n%s", id.Name, svc.Name, c.Segments, o, text)
			}
			sg := c.Segments[i]
			if sg.Ports.Proto != o.Proto || uint32(sg.Ports.Lo) != next || sg.Ports.Hi > o.Hi {
				t.Fatalf("%s -> %s: segment %s where %d/%s..%s is due\n%s", id.Name, svc.Name, sg.Ports, next, o.Proto, o, text)
			}
			for _, port := range []uint16{sg.Ports.Lo, sg.Ports.Hi, sg.Ports.Lo + uint16(r.IntN(int(sg.Ports.Hi-sg.Ports.Lo)+1))} {
				if d := p.Decide(id, svc, port, sg.Ports.Proto, at); d != sg.Decision {
					t.Fatalf("%s -> %s %d/%s at %s: map says %+v, Decide %+v\n%s", id.Name, svc.Name, port, sg.Ports.Proto, at, sg.Decision, d, text)
				}
			}
			next = uint32(sg.Ports.Hi) + 1
			i++
		}
	}
	if i != len(c.Segments) {
		t.Fatalf("%s -> %s: %d segments beyond the offered ports", id.Name, svc.Name, len(c.Segments)-i)
	}
	most := StateDeny
	for _, sg := range c.Segments {
		most = max(most, sg.State)
	}
	if c.State != most {
		t.Fatalf("%s -> %s: cell state %s, most open segment %s", id.Name, svc.Name, c.State.Class(), most.Class())
	}
}
