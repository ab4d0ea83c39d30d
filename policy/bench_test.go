package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchSizes scale identities and services with the rule count: 10,000
// rules over 10,000 identities and 1,000 services.
var benchSizes = []struct {
	rules int
	spec  genSpec
}{
	{10, genSpec{sites: 2, identities: 10, lan: 1, groups: 4, services: 5, egress: 1, rules: 10, windows: true, denies: true}},
	{1000, genSpec{sites: 5, identities: 1000, lan: 20, groups: 40, services: 100, egress: 5, rules: 1000, windows: true, denies: true}},
	{10000, genSpec{sites: 20, identities: 10000, lan: 100, groups: 200, services: 1000, egress: 20, rules: 10000, windows: true, denies: true}},
}

func benchPolicyText(spec genSpec) []byte {
	return []byte(genPolicy(rand.New(rand.NewPCG(42, uint64(spec.rules))), spec).text())
}

// benchQuery is one Decide question.
type benchQuery struct {
	id    *Identity
	svc   *Service
	port  uint16
	proto Proto
	at    time.Time
}

// benchQueries picks questions that hit the tables: mostly a service's own
// ports for identities that some rule names.
func benchQueries(p *Policy, n int) []benchQuery {
	rng := rand.New(rand.NewPCG(1, 2))
	ids, svcs := p.Identities(), p.Services()
	base := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	qs := make([]benchQuery, n)
	for i := range qs {
		svc := svcs[rng.IntN(len(svcs))]
		r := svc.Ports[rng.IntN(len(svc.Ports))]
		qs[i] = benchQuery{ids[rng.IntN(len(ids))], svc, r.Lo, r.Proto, base.Add(time.Duration(rng.IntN(7*24*60)) * time.Minute)}
	}
	return qs
}

func BenchmarkDecide(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(fmt.Sprintf("rules=%d", bs.rules), func(b *testing.B) {
			p, err := Parse("bench.toml", benchPolicyText(bs.spec))
			if err != nil {
				b.Fatal(err)
			}
			qs := benchQueries(p, 4096)
			allowed := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				q := &qs[i&4095]
				if p.Decide(q.id, q.svc, q.port, q.proto, q.at).Allowed() {
					allowed++
				}
			}
			_ = allowed
		})
	}
}

// BenchmarkDecideRatio measures the three sizes side by side, in blocks of
// 4096 decisions taken in turn, so that load on the machine hits them
// alike; it reports each size's ns per decision and the ratio of the
// largest to the smallest (the target is at most 2).
func BenchmarkDecideRatio(b *testing.B) {
	type sized struct {
		p  *Policy
		qs []benchQuery
		d  time.Duration
	}
	var all []*sized
	for _, bs := range benchSizes {
		p, err := Parse("bench.toml", benchPolicyText(bs.spec))
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, &sized{p: p, qs: benchQueries(p, 4096)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range all {
			start := time.Now()
			for j := range s.qs {
				q := &s.qs[j]
				s.p.Decide(q.id, q.svc, q.port, q.proto, q.at)
			}
			s.d += time.Since(start)
		}
	}
	per := func(s *sized) float64 { return float64(s.d.Nanoseconds()) / float64(b.N*4096) }
	for k, bs := range benchSizes {
		b.ReportMetric(per(all[k]), fmt.Sprintf("ns/decide-rules=%d", bs.rules))
	}
	b.ReportMetric(per(all[2])/per(all[0]), "x-rules=10000/rules=10")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkLoad(b *testing.B) {
	data := benchPolicyText(benchSizes[2].spec)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse("bench.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecideAllocs(t *testing.T) {
	p := loadExample(t)
	id, svc := p.Identity("dr-khan-laptop"), p.Service("pacs")
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	allocs := testing.AllocsPerRun(1000, func() {
		p.Decide(id, svc, 8443, ProtoTCP, at)
		p.Decide(id, svc, 8443, ProtoTCP, at.Add(120*time.Hour))
		p.Decide(id, p.Service("fileshare"), 445, ProtoTCP, at)
		p.Decide(nil, svc, 8443, ProtoTCP, at)
		p.Decide(id, svc, 1, ProtoTCP, at)
	})
	if allocs != 0 {
		t.Fatalf("Decide allocates %v times per run, want 0", allocs)
	}
}
