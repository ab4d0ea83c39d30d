package gateway

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/policysource/gittest"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

var (
	fleetSites = flag.Int("fleet.sites", 10, "BenchmarkFleet: site gateways in the process")
	fleetProbe = flag.Duration("fleet.probe", 2*time.Second, "BenchmarkFleet: how often each gateway probes each other site (the CPU the probes take grows as the square of -fleet.sites on one machine)")
	fleetPoll  = flag.Duration("fleet.poll", time.Second, "BenchmarkFleet: policy_source poll")
)

// fleet is n site gateways on one in-memory switch, each a real WireGuard
// device and gVisor stack, all following one repository.
type fleet struct {
	repo  *gittest.Repo
	be    testBackends
	keys  []testKey
	alice testKey
	gws   []*testGateway
	moved bool // svc-last is at the second-to-last site
}

func fleetSite(i int) string { return fmt.Sprintf("site-%03d", i) }

// policy has one site per gateway, one service per site (the last one an
// echo backend), alice at
// the first site and a rule that lets her reach every service.
func (f *fleet) policy() string {
	var b strings.Builder
	b.WriteString("[overlay]\nprefix = \"100.80.0.0/16\"\nservice_prefix = \"100.81.0.0/16\"\ndomain = \"fleet.internal\"\n")
	n := len(f.keys)
	for i, k := range f.keys {
		fmt.Fprintf(&b, "\n[[site]]\nname = %q\nkey = %q\naddress = \"100.80.%d.%d\"\nendpoint = \"127.0.0.1:%d\"\n",
			fleetSite(i), k.pubB64(), i/250, i%250+1, 40000+i)
	}
	fmt.Fprintf(&b, "\n[[identity]]\nname = \"alice\"\nkey = %q\naddress = \"100.80.250.10\"\nsite = %q\ngroups = [\"clinical\"]\n", f.alice.pubB64(), fleetSite(0))
	for i := range n {
		site := i
		if i == n-1 && f.moved {
			site = n - 2
		}
		// Services must not share endpoints; only the last one is dialled.
		ep := fmt.Sprintf("127.0.%d.%d:7", 2+i/250, i%250+1)
		if i == n-1 {
			ep = f.be.echo.String()
		}
		fmt.Fprintf(&b, "\n[[service]]\nname = \"svc-%03d\"\nsite = %q\nendpoints = [%q]\n", i, fleetSite(site), ep)
	}
	b.WriteString("\n[[rule]]\nname = \"clinical-all\"\nfrom = [\"group:clinical\"]\nto = [\"*\"]\n")
	return b.String()
}

func (f *fleet) start(dir string, sw *memnet.Switch, i int, poll time.Duration) (*testGateway, error) {
	os.WriteFile(filepath.Join(dir, "gw.key"), []byte(f.keys[i].privB64()+"\n"), 0o600)
	// memory_mib is the process's heap budget, and this process runs the
	// whole fleet: it bounds them all together.
	conf := fmt.Sprintf("site = %q\nprivate_key_file = \"gw.key\"\nlisten = \"127.0.0.1:%d\"\n[dns]\nquery_log = false\n[limits]\ndrain = \"1s\"\nmemory_mib = 6144\n[policy_source]\nrepo = %q\npoll = %q\n",
		fleetSite(i), 40000+i, f.repo.URL(), poll)
	os.WriteFile(filepath.Join(dir, "gateway.toml"), []byte(conf), 0o644)
	cfg, err := LoadConfig(filepath.Join(dir, "gateway.toml"))
	if err != nil {
		return nil, err
	}
	tg := &testGateway{key: f.keys[i], sw: sw, audit: &syncBuffer{}, dir: dir}
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	tg.gw, err = Start(cfg, Options{Bind: sw.Bind(netip.MustParseAddr("127.0.0.1")), Audit: NewAuditLogger(io.Discard), Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fleetSite(i), err)
	}
	tg.port = tg.gw.Port()
	return tg, nil
}

// BenchmarkFleet runs -fleet.sites gateways following one repository and
// times, per iteration, a commit (a service moving between two sites)
// until every gateway runs it. It reports the memory each gateway holds
// and the first cross-site flow's time. docs/DEVELOPERS.md has figures.
func BenchmarkFleet(b *testing.B) {
	n := *fleetSites
	if n < 2 {
		b.Fatal("-fleet.sites must be at least 2")
	}
	gittest.ServeFilesInProcess() // not n git-upload-pack processes a poll
	every := linkProbeEvery
	b.Cleanup(func() { linkProbeEvery = every }) // after the gateways' own cleanups
	linkProbeEvery = *fleetProbe
	f := &fleet{repo: gittest.New(b), be: startTestBackends(b), alice: newTestKey(b)}
	for range n {
		f.keys = append(f.keys, newTestKey(b))
	}
	f.repo.Commit("policy.toml", []byte(f.policy()), "fleet", nil)
	sw := memnet.NewSwitch()

	heapBefore := heapInUse()
	started := time.Now()
	f.gws = make([]*testGateway, n)
	errs := make([]error, n)
	// A few at a time: each real gateway has its own CPU for its start
	// (the peers' static keys, the first fetch); two shared cores for a
	// hundred at once time the first fetches out.
	var wg sync.WaitGroup
	slots := make(chan struct{}, 4)
	for i := range n {
		dir := b.TempDir()
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			f.gws[i], errs[i] = f.start(dir, sw, i, *fleetPoll)
		})
	}
	wg.Wait()
	startTook := time.Since(started)
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, tg := range f.gws {
			if tg != nil {
				wg.Go(func() { tg.gw.Close() })
			}
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	first := f.gws[0]
	alice := first.client(b, f.alice, "100.80.250.10")
	testwait.Until(b, 2*time.Minute, "site link to the last site", func() bool { return linkHealthy(first.gw, fleetSite(n-1)) })

	svc := fmt.Sprintf("svc-%03d", n-1)
	flowStart := time.Now()
	vip := first.gw.Policy().Service(svc).VIP.String()
	if err := echoVIP(alice, vip, f.be.echo.Port()); err != nil {
		b.Fatalf("cross-site flow to %s: %v", svc, err)
	}
	flowTook := time.Since(flowStart)
	heapAfter := heapInUse()
	goroutines := runtime.NumGoroutine()

	b.ResetTimer()
	var total time.Duration
	for range b.N {
		f.moved = !f.moved
		commit := f.repo.Commit("policy.toml", []byte(f.policy()), "move "+svc, nil)
		t0 := time.Now()
		for _, tg := range f.gws {
			testwait.Until(b, time.Minute, tg.gw.cfg.Site+" applies the commit", func() bool {
				return tg.gw.Status().PolicySource.Commit == commit
			})
		}
		total += time.Since(t0)
		// The client's next flow follows the service to its new site.
		if err := echoVIP(alice, vip, f.be.echo.Port()); err != nil {
			b.Fatalf("flow after the move: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-commit-to-all")
	b.ReportMetric(float64(heapAfter-heapBefore)/float64(n)/(1<<20), "heap-MiB/gateway")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/gateway")
	b.ReportMetric(float64(flowTook.Microseconds())/1000, "ms-first-cross-site-flow")
	b.ReportMetric(startTook.Seconds(), "s-start-all")
}

// heapInUse is the heap in use after two collections: the second empties
// the sync.Pool victim caches (wireguard-go's buffer pools), which the
// first only moves there.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// echoVIP sends a few bytes to the echo backend behind vip and checks
// the answer.
func echoVIP(c *wgclient.Client, vip string, port uint16) error {
	conn, err := dialVIP(c, vip, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("ping"))
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(conn)
	if err == nil && string(got) != "echo:ping" {
		err = fmt.Errorf("echo: %q", got)
	}
	return err
}
