package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// The load and fault suite: one gateway, standard WireGuard clients in
// namespaces, and for each scenario an attack bounded in count and time.
// Each scenario measures a well-behaved client (bob) before and during the
// attack and the gateway's RSS, open descriptors and goroutines before,
// during and after it, and asserts that the gateway survived, that bob
// still works, and that the figures come back to their baseline once the
// load stops. Alice is the attacker; carol sends SYNs that never complete.
//
// `make test` runs the short form (a few seconds per scenario);
// WARDGATE_STRESS=long (`make stress`) runs the long form and prints the
// table that docs/operating.md quotes.

// stressLong is set for the long form.
var stressLong = os.Getenv("WARDGATE_STRESS") == "long"

// pick chooses the short or the long form's figure.
func pick[T any](short, long T) T {
	if stressLong {
		return long
	}
	return short
}

// Limits the gateway runs with: small enough that the caps show.
const (
	stressFlowsPerIdentity = 512
	stressUDPIdle          = 3 * time.Second
)

// init runs this test binary as a load helper inside a namespace when
// WARDGATE_STRESS_HELPER names one (the harness's own helpers are
// dispatched by TestMain; these need no case there).
func init() {
	if h := os.Getenv("WARDGATE_STRESS_HELPER"); h != "" {
		os.Exit(runStressHelper(h, os.Args[len(os.Args)-1]))
	}
}

// gatewayStats is what the gateway reports about itself on /metrics.
type gatewayStats struct {
	rss, fds, goroutines float64
	enforcing            float64
}

// stressEnv is the gateway and clients the scenarios share.
type stressEnv struct {
	gw         *gatewayProc
	site       *site
	metrics    string // host:port of /metrics
	adminSock  string
	admin      *http.Client // on adminSock
	alice, bob *client
	carol      *client
	be         *backends
	iperfPort  int
	hold       *countingBackend
	goodPolicy string
}

// stressRow is one line of the figures table.
type stressRow struct {
	scenario, rate, victimBefore, victimDuring string
	before, during, after                      gatewayStats
	noGateway                                  bool
}

func TestStress(t *testing.T) {
	requireInterop(t, "iperf3", "curl", "sha256sum", "ping")
	var rows []stressRow
	defer func() { logStressTable(t, rows) }()

	t.Run("wardgate check of a huge policy", func(t *testing.T) {
		rows = append(rows, stressCheck(t))
	})

	e := startStressEnv(t)
	scenarios := []struct {
		name string
		run  func(t *testing.T, e *stressEnv) stressRow
	}{
		{"handshake-initiation flood", stressHandshakeFlood},
		{"random UDP junk at the WireGuard port", stressUDPJunk},
		{"connection and SYN flood from one identity", stressConnFlood},
		{"half-open handshakes", stressHalfOpen},
		{"UDP flood from many source ports", stressUDPFlood},
		{"slowloris", stressSlowloris},
		{"reload storm", stressReloadStorm},
		// Last: today it leaves the gateway broken (see docs/operating.md).
		{"DNS flood and malformed DNS", stressDNSFlood},
	}
	baseline := e.stats(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			row := sc.run(t, e)
			row.scenario = sc.name
			rows = append(rows, row)
		})
	}
	// What a scenario left behind, for whoever fixes it: where the
	// surplus goroutines wait (the gateway ends on SIGQUIT's dump).
	if st, err := e.tryStats(); err == nil && st.goroutines > baseline.goroutines+goroutineMargin {
		t.Logf("%.0f goroutines at the end (%.0f at the start); where they wait:\n%s", st.goroutines, baseline.goroutines, e.goroutineDump(t))
	}
}

// goroutineDump ends the gateway with SIGQUIT and counts its goroutines by
// state and the first frame outside the runtime, most common first.
func (e *stressEnv) goroutineDump(t *testing.T) string {
	mark := len(e.gw.output())
	e.gw.cmd.Process.Signal(syscall.SIGQUIT)
	// Done when the process is gone and its output has stopped growing
	// (tens of thousands of stacks take a while through the pipe).
	deadline := time.Now().Add(60 * time.Second)
	for size := -1; time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := len(e.gw.output())
		if e.gw.cmd.Process.Signal(syscall.Signal(0)) != nil && now == size {
			break
		}
		size = now
	}
	counts := map[string]int{}
	for _, block := range strings.Split(e.gw.output()[mark:], "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		head, ok := strings.CutPrefix(lines[0], "goroutine ")
		open, end := strings.Index(head, "["), strings.LastIndex(head, "]")
		if !ok || open < 0 || end < open {
			continue
		}
		state := head[open+1 : end]
		state, _, _ = strings.Cut(state, ",")
		// The first frame past the locks, and the first of wardgate's
		// own or miekg/dns's that led there.
		var frame, ours string
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "\t") || strings.HasPrefix(l, "created by") {
				continue
			}
			fn := l
			if i := strings.LastIndex(l, "("); i > 0 {
				fn = l[:i]
			}
			if frame == "" && !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "internal/") &&
				!strings.HasPrefix(fn, "sync.") && !strings.HasPrefix(fn, "gvisor.dev/gvisor/pkg/sync.") {
				frame = fn
			}
			if ours == "" && (strings.Contains(fn, "wardgate/wardgate/") || strings.Contains(fn, "miekg/dns")) {
				ours = fn
			}
		}
		frame += " from " + ours
		counts[state+" in "+frame]++
	}
	// The dump itself is too long to log with the gateway's output.
	e.gw.mu.Lock()
	e.gw.stderr.Truncate(mark)
	e.gw.stderr.WriteString("(goroutine dump on SIGQUIT left out: see the summary in the test log)\n")
	e.gw.mu.Unlock()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var b strings.Builder
	for _, k := range keys[:min(len(keys), 8)] {
		fmt.Fprintf(&b, "%7d %s\n", counts[k], k)
	}
	return b.String()
}

func logStressTable(t *testing.T, rows []stressRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | rate reached | victim before | victim during | RSS MiB before/during/after | fds before/during/after | goroutines before/during/after |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.noGateway {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | - | - | - |\n", r.scenario, r.rate, r.victimBefore, r.victimDuring)
			continue
		}
		mib := func(v float64) string { return fmt.Sprintf("%.0f", v/(1<<20)) }
		n := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s/%s/%s | %s/%s/%s | %s/%s/%s |\n",
			r.scenario, r.rate, r.victimBefore, r.victimDuring,
			mib(r.before.rss), mib(r.during.rss), mib(r.after.rss),
			n(r.before.fds), n(r.during.fds), n(r.after.fds),
			n(r.before.goroutines), n(r.during.goroutines), n(r.after.goroutines))
	}
	t.Logf("stress figures (%s form):%s", pick("short", "long"), b.String())
}

// stressPolicy: alice (clinical) and bob (admin) may reach the web server,
// the UDP echo, iperf3 and the counting backend; only bob reaches payroll.
// Carol (clinical) is the half-open sender. extra is appended.
func stressPolicy(gwPub, alicePub, bobPub, carolPub string, be *backends, iperfPort, holdPort int, extra string) string {
	return leedsPolicy(gwPub, alicePub, bobPub) + fmt.Sprintf(`
[[identity]]
name = "carol"
key = %q
address = "100.80.1.12"
site = "leeds"
groups = ["clinical"]

[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "echo"
site = "leeds"
vip = "100.81.0.12"
endpoints = ["127.0.0.1:%d/udp"]

[[service]]
name = "iperf"
site = "leeds"
vip = "100.81.0.20"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "hold"
site = "leeds"
vip = "100.81.0.30"
endpoints = ["127.0.0.1:%d"]

[[rule]]
name = "everyone"
from = ["group:clinical", "group:admin"]
to = ["ehr", "echo", "iperf", "hold"]

[[rule]]
name = "admin-payroll"
from = ["group:admin"]
to = ["payroll"]
%s`, carolPub, be.web, be.payroll, be.echo, iperfPort, holdPort, extra)
}

func startStressEnv(t *testing.T) *stressEnv {
	e := &stressEnv{be: startBackends(t), iperfPort: freeTCPPort(t), hold: startCountingBackend(t)}
	iperfServer(t, nil, "127.0.0.1", e.iperfPort)
	gwKeys, alice, bob, carol := newKeypair(t), newKeypair(t), newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	e.goodPolicy = stressPolicy(gwKeys.pub, alice.pub, bob.pub, carol.pub, e.be, e.iperfPort, e.hold.port, "")
	e.metrics = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	e.site = writeSite(t, "leeds", gwKeys, port, e.goodPolicy, fmt.Sprintf(`flows_per_identity = %d
udp_idle = %q
dial_timeout = "2s"

[admin]
metrics = %q
socket = "admin.sock"
`, stressFlowsPerIdentity, stressUDPIdle, e.metrics))
	// Level debug logs every flow; under a flood that is the test's
	// own memory, not the gateway's.
	gwToml := filepath.Join(e.site.dir, "gateway.toml")
	data, err := os.ReadFile(gwToml)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gwToml, []byte(strings.Replace(string(data), `level = "debug"`, `level = "info"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.adminSock = filepath.Join(e.site.dir, "admin.sock")
	e.admin = &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.adminSock)
		}},
	}
	e.gw = startGateway(t, e.site.dir, port)
	e.alice = newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port)
	e.bob = newClient(t, "bob", "100.80.1.11", bob, gwKeys.pub, port)
	e.carol = newClient(t, "carol", "100.80.1.12", carol, gwKeys.pub, port)
	for _, c := range []*client{e.alice, e.bob, e.carol} {
		testwait.Until(t, 15*time.Second, c.label+"'s tunnel", func() bool {
			_, err := c.exec(3*time.Second, "ping", "-c", "1", "-W", "1", "100.80.0.1")
			return err == nil
		})
	}
	// Carol's SYN-ACKs must go nowhere: without her address in her
	// namespace, the kernel drops them instead of answering a reset. (The
	// device keeps another address: losing its last one flushes its routes.)
	run(t, "ip", "-n", e.carol.netns.name, "addr", "add", "192.0.2.12/32", "dev", e.carol.dev)
	run(t, "ip", "-n", e.carol.netns.name, "addr", "del", "100.80.1.12/32", "dev", e.carol.dev)
	return e
}

// countingBackend is a TCP server on loopback that holds each connection
// until the client closes it and counts those open now.
type countingBackend struct {
	port int
	open atomic.Int64
}

func startCountingBackend(t testing.TB) *countingBackend {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cb := &countingBackend{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cb.open.Add(1)
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
				cb.open.Add(-1)
			}()
		}
	}()
	return cb
}

// stats scrapes the gateway's /metrics and fails the test when it cannot.
func (e *stressEnv) stats(t testing.TB) gatewayStats {
	t.Helper()
	st, err := e.tryStats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tryStats scrapes the gateway's /metrics (the sampler's goroutine may not
// fail the test).
func (e *stressEnv) tryStats() (gatewayStats, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		return gatewayStats{}, fmt.Errorf("scraping /metrics: %w", err)
	}
	defer resp.Body.Close()
	var s gatewayStats
	fields := map[string]*float64{
		"go_goroutines":                 &s.goroutines,
		"process_resident_memory_bytes": &s.rss,
		"process_open_fds":              &s.fds,
		"wardgate_enforcing":            &s.enforcing,
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := fields[name]; ok && p != nil {
			*p, _ = strconv.ParseFloat(value, 64)
			found++
		}
	}
	if found != len(fields) {
		return s, fmt.Errorf("/metrics has %d of the %d figures wanted (go_goroutines, process_resident_memory_bytes, process_open_fds, wardgate_enforcing)", found, len(fields))
	}
	return s, nil
}

// alive fails the test when the gateway process has exited.
func (e *stressEnv) alive(t testing.TB) {
	t.Helper()
	if err := e.gw.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the gateway process is gone: %v\n%s", err, tail(e.gw.output(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// sampler scrapes the gateway while an attack runs and keeps the peaks.
type sampler struct {
	mu     sync.Mutex
	peak   gatewayStats
	denied bool // wardgate_enforcing was seen at 0
	stop   chan struct{}
	done   chan struct{}
}

func (e *stressEnv) sample() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			st, err := e.tryStats()
			if err == nil {
				s.mu.Lock()
				s.peak.rss = max(s.peak.rss, st.rss)
				s.peak.fds = max(s.peak.fds, st.fds)
				s.peak.goroutines = max(s.peak.goroutines, st.goroutines)
				if st.enforcing != 1 {
					s.denied = true
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() gatewayStats {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Margins for "back to baseline": descriptors and goroutines within a few
// of their count before the attack, RSS within a generous factor (Go
// returns freed memory to the system lazily).
const (
	fdMargin        = 8
	goroutineMargin = 30
	rssFactor       = 2
	rssSlack        = 64 << 20
)

// settleTimeout bounds the wait for the baseline.
var settleTimeout = pick(10*time.Second, 60*time.Second)

// settle waits for the gateway to come back to its baseline after an
// attack and returns its figures then; it reports (without stopping the
// test) what did not come back.
func (e *stressEnv) settle(t *testing.T, before gatewayStats) gatewayStats {
	t.Helper()
	e.alive(t)
	var st gatewayStats
	deadline := time.Now().Add(settleTimeout)
	for {
		st = e.stats(t)
		back := st.fds <= before.fds+fdMargin && st.goroutines <= before.goroutines+goroutineMargin && st.rss <= rssFactor*before.rss+rssSlack
		if back {
			return st
		}
		if time.Now().After(deadline) {
			t.Errorf("not back to baseline %v after the load stopped: fds %.0f (before %.0f, margin %d), goroutines %.0f (before %.0f, margin %d), RSS %.0f MiB (before %.0f MiB, factor %d + %d MiB); live flows: %s",
				settleTimeout, st.fds, before.fds, fdMargin, st.goroutines, before.goroutines, goroutineMargin, st.rss/(1<<20), before.rss/(1<<20), rssFactor, rssSlack>>20, e.flowSummary())
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flowSummary counts the gateway's live flows by identity, service and
// protocol (wardgate flows), for the report of what did not go away.
func (e *stressEnv) flowSummary() string {
	resp, err := e.admin.Get("http://wardgate/v1/flows")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var flows []struct {
		Identity, Service, Proto string
		Start                    time.Time
		BytesIn                  int64 `json:"bytes_in"`
		BytesOut                 int64 `json:"bytes_out"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&flows); err != nil {
		return err.Error()
	}
	counts := map[string]int{}
	var oldest time.Time
	var moved int64
	for _, f := range flows {
		counts[f.Identity+"/"+f.Service+"/"+f.Proto]++
		if oldest.IsZero() || f.Start.Before(oldest) {
			oldest = f.Start
		}
		moved += f.BytesIn + f.BytesOut
	}
	if len(flows) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d %v, oldest %.0f s old, %d bytes moved in all", len(flows), counts, time.Since(oldest).Seconds(), moved)
}

// attack is one running load: started, it runs until stop (or its own
// bound), and wait returns what rate it reached.
type attack struct {
	stop func()
	wait func() string
}

// runUnderAttack measures victim before, starts the attack, measures the
// victim again while it runs, stops it and waits for the baseline.
func (e *stressEnv) runUnderAttack(t *testing.T, victim func(t *testing.T) string, start func(t *testing.T) attack) stressRow {
	t.Helper()
	var row stressRow
	row.before = e.stats(t)
	row.victimBefore = victim(t)
	s := e.sample()
	a := start(t)
	row.victimDuring = victim(t)
	a.stop()
	row.rate = a.wait()
	row.during = s.finish()
	if s.denied {
		t.Errorf("wardgate_enforcing left 1 during the attack")
	}
	row.after = e.settle(t, row.before)
	e.stillServes(t)
	t.Logf("rate %s; victim %s before, %s during", row.rate, row.victimBefore, row.victimDuring)
	return row
}

// stillServes checks that bob still gets through after the attack.
func (e *stressEnv) stillServes(t *testing.T) {
	t.Helper()
	out, err := e.bob.exec(15*time.Second, "curl", "-sS", "--max-time", "10", fmt.Sprintf("http://100.81.0.10:%d/", e.be.web))
	if err != nil || out != "hello from ehr\n" {
		t.Errorf("bob's curl after the attack: %v: %q", err, out)
	}
}

// victimThroughput is bob's iperf3 throughput through the gateway.
func (e *stressEnv) victimThroughput(t *testing.T) string {
	r := iperf(t, e.bob.netns, "100.81.0.20", e.iperfPort, 1, pick(1, 5))
	if r.bytes < 1<<20 {
		t.Errorf("bob's iperf3 moved only %.0f bytes", r.bytes)
	}
	return fmt.Sprintf("%.0f Mbit/s", r.bps/1e6)
}

// victimConnectP99 is bob's TCP connect p99 through the gateway; it must
// stay under a second with every connect succeeding.
func (e *stressEnv) victimConnectP99(t *testing.T) string {
	return e.victimP99(t, "connp99", fmt.Sprintf("100.81.0.30:%d,%d", e.hold.port, pick(40, 300)), "connect", time.Second, 0)
}

// victimConnectsAtAll is victimConnectP99 for a flood that takes the CPU
// itself: every packet of it must be decrypted, in the device's queue that
// the victim's packets share, by the two cores the attacker's own
// WireGuard runs on too. What must hold there is that bob still connects,
// every time, within 5 s; the p99 is reported.
func (e *stressEnv) victimConnectsAtAll(t *testing.T) string {
	return e.victimP99(t, "connp99", fmt.Sprintf("100.81.0.30:%d,%d,%d", e.hold.port, pick(40, 300), 5000), "connect", 5*time.Second, 0)
}

// victimDNSP99 is bob's DNS query p99 for a service name, asked as a stub
// resolver asks (a second per try, three tries); the p99 is reported. A
// DNS flood from one client takes both of this machine's cores, and bob's
// datagrams share the DNS endpoint's socket buffer with the flood's until
// admission drops those: 1 query in 40 unanswered after three tries was
// seen in about one run in eight (1 in 300 in the long form), so up to
// dnsVictimLoss of them may fail; a stub resolver asks again.
func (e *stressEnv) victimDNSP99(t *testing.T) string {
	return e.victimP99(t, "dnsp99", fmt.Sprintf("100.80.0.1:53,ehr.test.internal,%d", pick(40, 300)), "DNS", 3500*time.Millisecond, dnsVictimLoss)
}

// dnsVictimLoss is the share of bob's DNS queries that may go unanswered
// after three tries during a DNS flood.
const dnsVictimLoss = 0.03

// victimP99 runs bob's helper and checks the p99 against bound and the
// share of failures against maxLoss.
func (e *stressEnv) victimP99(t *testing.T, helper, arg, what string, bound time.Duration, maxLoss float64) string {
	out, err := e.bob.stressHelper(helperBudget+30*time.Second, helper, arg)
	var p99 float64
	var fails, done int
	if _, perr := fmt.Sscanf(out, "%f %d %d", &p99, &fails, &done); err != nil || perr != nil {
		t.Errorf("bob's %s helper: %v: %s", what, err, out)
		return what + " failed"
	}
	if p99 >= float64(bound.Milliseconds()) || float64(fails) > maxLoss*float64(done) {
		t.Errorf("bob's %s p99 %.1f ms with %d of %d failed, want < %v and at most %.0f%% failed", what, p99, fails, done, bound, 100*maxLoss)
	}
	if fails > 0 {
		return fmt.Sprintf("%s p99 %.1f ms, %d of %d failed", what, p99, fails, done)
	}
	return fmt.Sprintf("%s p99 %.1f ms", what, p99)
}

// attackSeconds bounds each namespace helper's attack: longer than the
// victim's measurement during it.
var attackSeconds = pick(4, 20)

// stressHelper runs a load helper in the namespace to completion.
func (n *netns) stressHelper(timeout time.Duration, name, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.cmd(ctx, os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "WARDGATE_STRESS_HELPER="+name)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// startNSAttack runs a load helper in ns; it prints "go" once loading and
// its rate as its last line when its time (attackSeconds) is up.
func startNSAttack(t *testing.T, ns *netns, name, arg string) attack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(attackSeconds+60)*time.Second)
	cmd := ns.cmd(ctx, os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "WARDGATE_STRESS_HELPER="+name)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "go" {
		cancel()
		cmd.Wait()
		t.Fatalf("%s helper did not start: %q", name, sc.Text())
	}
	var last string
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
			last = sc.Text()
		}
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return attack{
		// The helpers stop on their own when their time is up; stop
		// waits for that so that the rate line is printed.
		stop: func() { <-done },
		wait: func() string { <-done; cancel(); return last },
	}
}

// both runs two attacks at once.
func both(a, b attack) attack {
	return attack{
		stop: func() { a.stop(); b.stop() },
		wait: func() string { return a.wait() + " + " + b.wait() },
	}
}

// startUDPSender floods the gateway's WireGuard port from the root
// namespace on loopback with what next makes, from several sockets (and so
// source ports), at about rate datagrams a second in all, until stopped or
// its bound. The rate is paced: unpaced, the sender takes the CPU the
// gateway needs on a small machine, and the figure would say more about
// the machine than the gateway.
func startUDPSender(t *testing.T, port, sockets, rate int, unit string, next func(buf []byte) []byte) attack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(attackSeconds+30)*time.Second)
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range sockets {
		c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 1500)
			const tick = 10 * time.Millisecond
			perTick := max(1, rate/sockets/int(time.Second/tick))
			due := time.Now()
			for ctx.Err() == nil {
				for range perTick {
					c.Write(next(buf)) // ECONNREFUSED or a full buffer: keep sending
				}
				sent.Add(int64(perTick))
				due = due.Add(tick)
				time.Sleep(time.Until(due))
			}
		}()
	}
	t.Cleanup(cancel)
	var elapsed time.Duration
	return attack{
		stop: func() { cancel(); wg.Wait(); elapsed = time.Since(start) },
		wait: func() string {
			return fmt.Sprintf("%.0f %s/s from %d ports", float64(sent.Load())/elapsed.Seconds(), unit, sockets)
		},
	}
}

func stressHandshakeFlood(t *testing.T, e *stressEnv) stressRow {
	return e.runUnderAttack(t, e.victimThroughput, func(t *testing.T) attack {
		return startUDPSender(t, e.site.port, 4, pick(20000, 50000), "initiations", func(buf []byte) []byte {
			// wireguard-go's handshake initiation: type 1, three zero
			// bytes, then 144 bytes of sender index, ephemeral key,
			// sealed static key and timestamp, and two MACs.
			m := buf[:148]
			rand.Read(m[4:])
			m[0], m[1], m[2], m[3] = 1, 0, 0, 0
			return m
		})
	})
}

func stressUDPJunk(t *testing.T, e *stressEnv) stressRow {
	return e.runUnderAttack(t, e.victimThroughput, func(t *testing.T) attack {
		return startUDPSender(t, e.site.port, 16, pick(20000, 50000), "datagrams", func(buf []byte) []byte {
			m := buf[:1+mrand.IntN(1400)]
			rand.Read(m)
			if len(m) > 4 && mrand.IntN(2) == 0 {
				// Half of it starts like a message wireguard-go knows
				// (types 1 to 4), so it gets past the first check.
				m[0], m[1], m[2], m[3] = byte(1+mrand.IntN(4)), 0, 0, 0
			}
			return m
		})
	})
}

func stressConnFlood(t *testing.T, e *stressEnv) stressRow {
	hold := fmt.Sprintf("100.81.0.30:%d", e.hold.port)
	return e.runUnderAttack(t, e.victimConnectP99, func(t *testing.T) attack {
		conns := startNSAttack(t, e.alice.netns, "connflood", fmt.Sprintf("%s,%d,%d", hold, pick(32, 128), attackSeconds))
		syns := startNSAttack(t, e.alice.netns, "synflood", fmt.Sprintf("100.80.1.10,%s,%d", hold, attackSeconds))
		return both(conns, syns)
	})
}

func stressHalfOpen(t *testing.T, e *stressEnv) stressRow {
	hold := fmt.Sprintf("100.81.0.30:%d", e.hold.port)
	var peak atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if n := e.hold.open.Load(); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var stoppedAt time.Time
	row := e.runUnderAttack(t, e.victimConnectP99, func(t *testing.T) attack {
		a := startNSAttack(t, e.carol.netns, "synflood", fmt.Sprintf("100.80.1.12,%s,%d", hold, attackSeconds))
		return attack{stop: func() { a.stop(); stoppedAt = time.Now() }, wait: a.wait}
	})
	close(stopWatch)
	<-watched
	// No backend connection may outlive its never-completed handshake by
	// more than a few seconds. The wait goes on (bounded) to measure how
	// long they really stay, for the report.
	// The gateway gives a client 5 s to complete its handshake once the
	// backend has answered (gateway/tcp.go, handshakeWait); the rest is
	// slack for the last SYNs in flight and a busy machine.
	const heldAtMost = 8 * time.Second
	limit := pick(heldAtMost+time.Second, 90*time.Second)
	for e.hold.open.Load() > 0 && time.Since(stoppedAt) < limit {
		time.Sleep(100 * time.Millisecond)
	}
	took, left := time.Since(stoppedAt), e.hold.open.Load()
	row.rate += fmt.Sprintf("; backend conns open: peak %d, last closed %.1f s after the SYNs stopped", peak.Load(), took.Seconds())
	if left > 0 {
		row.rate += fmt.Sprintf(" (%d still open at %v)", left, limit)
	}
	if left > 0 || took > heldAtMost {
		t.Errorf("backend connections of half-open handshakes held too long: %d open at %.1f s after the SYNs stopped (peak %d), want none after %v",
			left, took.Seconds(), peak.Load(), heldAtMost)
	}
	return row
}

func stressUDPFlood(t *testing.T, e *stressEnv) stressRow {
	echo := fmt.Sprintf("100.81.0.12:%d", e.be.echo)
	row := e.runUnderAttack(t, e.victimConnectsAtAll, func(t *testing.T) attack {
		return startNSAttack(t, e.alice.netns, "udpflood", fmt.Sprintf("%s,%d,%d", echo, pick(1000, 4000), attackSeconds))
	})
	if extra := row.during.fds - row.before.fds; extra > stressFlowsPerIdentity+fdMargin {
		t.Errorf("UDP flows from one identity took %.0f descriptors, more than flows_per_identity (%d)", extra, stressFlowsPerIdentity)
	}
	return row
}

func stressSlowloris(t *testing.T, e *stressEnv) stressRow {
	hold := fmt.Sprintf("100.81.0.30:%d", e.hold.port)
	row := e.runUnderAttack(t, e.victimConnectP99, func(t *testing.T) attack {
		return startNSAttack(t, e.alice.netns, "holdmany", fmt.Sprintf("%s,%d,%d", hold, pick(1500, 5000), attackSeconds))
	})
	var held, refused int
	fmt.Sscanf(row.rate, "held %d refused %d", &held, &refused)
	if held > stressFlowsPerIdentity || held < stressFlowsPerIdentity/2 {
		t.Errorf("alice held %d idle connections, want about flows_per_identity (%d)", held, stressFlowsPerIdentity)
	}
	return row
}

func stressDNSFlood(t *testing.T, e *stressEnv) stressRow {
	return e.runUnderAttack(t, e.victimDNSP99, func(t *testing.T) attack {
		return startNSAttack(t, e.alice.netns, "dnsflood", fmt.Sprintf("100.80.0.1:53,%d", attackSeconds))
	})
}

// stressReloadStorm reloads alternately a good policy (a spare service
// comes and goes) and a broken one (a TOML error, then a rule naming a
// group nobody has) while bob downloads in a loop and alice keeps trying a
// service she is denied.
func stressReloadStorm(t *testing.T, e *stressEnv) stressRow {
	reloads := pick(40, 1000)
	policyFile := filepath.Join(e.site.dir, "policy.toml")
	t.Cleanup(func() { os.WriteFile(policyFile, []byte(e.goodPolicy), 0o644) })
	// reload is what `wardgate reload --socket` does: POST /v1/reload.
	reload := func(policy string) (int, string) {
		if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
			return 0, err.Error()
		}
		resp, err := e.admin.Post("http://wardgate/v1/reload", "application/json", nil)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	spare := "\n[[service]]\nname = \"spare\"\nsite = \"leeds\"\nvip = \"100.81.0.99\"\nendpoints = [\"127.0.0.1:9\"]\n"
	broken := []string{
		e.goodPolicy + "\n[[rule]\nname = \"unclosed\"\n",
		e.goodPolicy + "\n[[rule]]\nname = \"ghosts\"\nfrom = [\"group:nobody-has-this\"]\nto = [\"ehr\"]\n",
	}
	countErrors := func() int {
		n := 0
		for _, ev := range e.gw.events(t) {
			if ev["event"] == "config.error" {
				n++
			}
		}
		return n
	}
	errorsBefore := countErrors()
	var downloads, denials atomic.Int64
	var loopErrs []string
	var mu sync.Mutex
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(loopErrs) < 10 {
			loopErrs = append(loopErrs, fmt.Sprintf(format, a...))
		}
	}
	var goodN, brokenN int
	var took time.Duration
	row := e.runUnderAttack(t, func(t *testing.T) string {
		start := time.Now()
		if err := e.download(); err != nil {
			t.Errorf("bob's download: %v", err)
		}
		return fmt.Sprintf("20 MB download %.2f s", time.Since(start).Seconds())
	}, func(t *testing.T) attack {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var downloadTimes []time.Duration
		wg.Add(2)
		go func() { // bob downloads, checked by SHA-256
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				if err := e.download(); err != nil {
					fail("bob's download %d: %v", downloads.Load()+1, err)
				}
				mu.Lock()
				downloadTimes = append(downloadTimes, time.Since(start))
				mu.Unlock()
				downloads.Add(1)
			}
		}()
		go func() { // alice is refused payroll throughout
			defer wg.Done()
			for ctx.Err() == nil {
				out, err := e.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://100.81.0.11:%d/", e.be.payroll))
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 7 {
					fail("alice reached payroll (or was not refused at once) during the storm: %v: %q", err, out)
				}
				denials.Add(1)
			}
		}()
		stormDone := make(chan struct{})
		go func() {
			defer close(stormDone)
			start := time.Now()
			for i := range reloads {
				if i%2 == 0 {
					policy := e.goodPolicy
					if i%4 == 0 {
						policy += spare
					}
					if code, body := reload(policy); code != http.StatusOK {
						t.Errorf("good reload %d refused: %d %s", i, code, body)
					}
					goodN++
					continue
				}
				if code, body := reload(broken[(i/2)%2]); code != http.StatusUnprocessableEntity {
					t.Errorf("broken reload %d not refused: %d %s", i, code, body)
				}
				brokenN++
			}
			took = time.Since(start)
			reload(e.goodPolicy)
		}()
		return attack{
			stop: func() { <-stormDone; cancel(); wg.Wait() },
			wait: func() string {
				slices.Sort(downloadTimes)
				slowest := time.Duration(0)
				if len(downloadTimes) > 0 {
					slowest = downloadTimes[len(downloadTimes)-1]
				}
				return fmt.Sprintf("%d reloads in %.1f s (%.0f/s), %d downloads (slowest %.2f s), %d denials checked",
					reloads, took.Seconds(), float64(reloads)/took.Seconds(), downloads.Load(), slowest.Seconds(), denials.Load())
			},
		}
	})
	for _, msg := range loopErrs {
		t.Error(msg)
	}
	if downloads.Load() == 0 || denials.Load() == 0 {
		t.Errorf("the storm ended before a download (%d) and a denial (%d) were checked", downloads.Load(), denials.Load())
	}
	testwait.Until(t, 10*time.Second, "a config.error for every broken reload", func() bool { return countErrors()-errorsBefore >= brokenN })
	if n := countErrors() - errorsBefore; n != brokenN {
		t.Errorf("%d config.error events for %d broken reloads", n, brokenN)
	}
	t.Logf("%d good and %d broken reloads", goodN, brokenN)
	return row
}

// download fetches bob's 20 MB through the gateway and checks its SHA-256.
func (e *stressEnv) download() error {
	out, err := e.bob.exec(60*time.Second, "sh", "-c", fmt.Sprintf("curl -sS --max-time 50 http://100.81.0.10:%d/big | sha256sum", e.be.web))
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if got := strings.Fields(out)[0]; got != e.be.bigSum {
		return fmt.Errorf("sha256 %s, want %s", got, e.be.bigSum)
	}
	return nil
}

// stressCheck runs `wardgate check` on a policy of many rules and on one
// holding a huge string, and bounds its time and peak memory.
func stressCheck(t *testing.T) stressRow {
	dir := t.TempDir()
	rules := pick(5000, 50000)
	huge := pick(1<<20, 10<<20)
	var b strings.Builder
	b.WriteString(leedsPolicy(newKeypair(t).pub, newKeypair(t).pub, newKeypair(t).pub))
	const services = 200
	for i := range services {
		fmt.Fprintf(&b, "\n[[service]]\nname = \"svc%d\"\nsite = \"leeds\"\nvip = \"100.81.%d.%d\"\nendpoints = [\"127.0.0.1:%d\"]\n", i, i/200, 1+i%200, 10000+i)
	}
	for i := range rules {
		fmt.Fprintf(&b, "\n[[rule]]\nname = \"r%d\"\nfrom = [\"group:%s\"]\nto = [\"svc%d\"]\n", i, []string{"clinical", "admin"}[i%2], i%services)
	}
	many := filepath.Join(dir, "many.toml")
	if err := os.WriteFile(many, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "huge.toml")
	hugeName := strings.Repeat("x", huge)
	if err := os.WriteFile(big, []byte(leedsPolicy(newKeypair(t).pub, newKeypair(t).pub, newKeypair(t).pub)+
		fmt.Sprintf("\n[[service]]\nname = %q\nsite = \"leeds\"\nvip = \"100.81.0.10\"\nendpoints = [\"127.0.0.1:80\"]\n", hugeName)), 0o644); err != nil {
		t.Fatal(err)
	}
	const timeBound, memBound = 60 * time.Second, 1 << 30
	check := func(file string) (code int, took time.Duration, maxRSS int64, outLen int) {
		ctx, cancel := context.WithTimeout(context.Background(), timeBound)
		defer cancel()
		cmd := exec.CommandContext(ctx, wardgateBin, "check", "-c", file)
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		took = time.Since(start)
		if ctx.Err() != nil {
			t.Fatalf("wardgate check %s did not finish in %v", filepath.Base(file), timeBound)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		maxRSS = ru.Maxrss * 1024
		if maxRSS > memBound {
			t.Errorf("wardgate check %s peaked at %d MiB, over %d MiB", filepath.Base(file), maxRSS>>20, memBound>>20)
		}
		if len(out) > 64<<10 {
			t.Logf("wardgate check %s wrote %d bytes, starting: %.300s", filepath.Base(file), len(out), out)
		}
		return cmd.ProcessState.ExitCode(), took, maxRSS, len(out)
	}
	code, took, rss, _ := check(many)
	if code != 0 {
		t.Errorf("wardgate check of %d rules: exit %d", rules, code)
	}
	hcode, htook, hrss, hout := check(big)
	return stressRow{
		noGateway:    true,
		scenario:     "wardgate check",
		rate:         fmt.Sprintf("%d rules (%d KiB); a %d MiB service name", rules, len(b.String())>>10, huge>>20),
		victimBefore: fmt.Sprintf("rules: exit %d, %.2f s, peak RSS %d MiB", code, took.Seconds(), rss>>20),
		victimDuring: fmt.Sprintf("huge string: exit %d, %.2f s, peak RSS %d MiB, %d bytes of output", hcode, htook.Seconds(), hrss>>20, hout),
	}
}

// --- the load helpers, run in a namespace as this test binary ---

func runStressHelper(name, arg string) int {
	args := strings.Split(arg, ",")
	num := func(i int) int { n, _ := strconv.Atoi(args[i]); return n }
	switch name {
	case "connp99":
		timeout := 2 * time.Second
		if len(args) > 2 {
			timeout = time.Duration(num(2)) * time.Millisecond
		}
		return helperConnectP99(args[0], num(1), timeout)
	case "dnsp99":
		return helperDNSP99(args[0], args[1], num(2))
	case "connflood":
		return helperConnFlood(args[0], num(1), num(2))
	case "synflood":
		return helperSYNFlood(args[0], args[1], num(2))
	case "udpflood":
		return helperUDPFlood(args[0], num(1), num(2))
	case "holdmany":
		return helperHoldMany(args[0], num(1), num(2))
	case "dnsflood":
		return helperDNSFlood(args[0], num(1))
	}
	fmt.Println("unknown stress helper", name)
	return 2
}

// p99 of the durations, in milliseconds.
func p99(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[(len(d)*99)/100]) / 1e6
}

// helperBudget bounds the victim helpers: they stop early when it is spent.
var helperBudget = pick(8*time.Second, 30*time.Second)

// helperConnectP99: n TCP connects to addr one after another (fewer when
// helperBudget is spent); prints the p99 in ms, how many failed (a failure
// counts as its 2 s timeout) and how many were tried.
func helperConnectP99(addr string, n int, timeout time.Duration) int {
	var d []time.Duration
	fails := 0
	budget := time.Now().Add(helperBudget)
	for range n {
		if time.Now().After(budget) {
			break
		}
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			fails++
			d = append(d, timeout)
			continue
		}
		d = append(d, time.Since(start))
		c.Close()
	}
	fmt.Printf("%.2f %d %d\n", p99(d), fails, len(d))
	return 0
}

// dnsQuery is a query for name, type A, with the given id.
func dnsQuery(id uint16, name string) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	m = append(m, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		m = append(m, byte(len(label)))
		m = append(m, label...)
	}
	return append(m, 0, 0, 1, 0, 1)
}

// helperDNSP99: n queries for name at server one after another (fewer
// when helperBudget is spent); prints the p99 in ms, how many got no
// NOERROR answer within a second and how many were asked.
func helperDNSP99(server, name string, n int) int {
	c, err := net.Dial("udp", server)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	var d []time.Duration
	fails := 0
	buf := make([]byte, 1500)
	budget := time.Now().Add(helperBudget)
	// ask sends one try and waits a second for its answer.
	ask := func(id uint16) bool {
		c.Write(dnsQuery(id, name))
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			k, err := c.Read(buf)
			if err != nil {
				return false
			}
			if k >= 12 && binary.BigEndian.Uint16(buf) == id {
				return buf[3]&0xf == 0 && binary.BigEndian.Uint16(buf[6:]) > 0
			}
		}
	}
	for i := range n {
		if time.Now().After(budget) {
			break
		}
		// Like a stub resolver: up to three tries, a second each; the
		// time is until the answer, retries included.
		start := time.Now()
		ok := false
		for try := range 3 {
			if ok = ask(uint16(i*3 + try + 1)); ok {
				break
			}
		}
		if !ok {
			fails++
		}
		d = append(d, time.Since(start))
	}
	fmt.Printf("%.2f %d %d\n", p99(d), fails, len(d))
	return 0
}

// helperConnFlood: conc workers open and close TCP connections to addr
// for secs; prints the rate of those that connected.
func helperConnFlood(addr string, conc, secs int) int {
	fmt.Println("go")
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(time.Duration(secs) * time.Second)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("%.0f conns/s (%d workers, %.0f/s refused or timed out)\n", float64(ok.Load())/el, conc, float64(failed.Load())/el)
	return 0
}

// checksum is the Internet checksum.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// helperSYNFlood: raw TCP SYNs from src to dst (ip:port), random source
// ports, for secs; prints the rate. The kernel of the namespace answers
// SYN-ACKs with resets only when src is one of its addresses.
func helperSYNFlood(src, dst string, secs int) int {
	host, portText, _ := strings.Cut(dst, ":")
	port, _ := strconv.Atoi(portText)
	s4, d4 := net.ParseIP(src).To4(), net.ParseIP(host).To4()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		fmt.Println("raw socket:", err)
		return 1
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrInet4{}
	copy(to.Addr[:], d4)
	fmt.Println("go")
	pkt := make([]byte, 40)
	start := time.Now()
	deadline := start.Add(time.Duration(secs) * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		for range 32 {
			ip, tcp := pkt[:20], pkt[20:]
			clear(pkt)
			ip[0], ip[8], ip[9] = 0x45, 64, syscall.IPPROTO_TCP
			binary.BigEndian.PutUint16(ip[2:], 40)
			copy(ip[12:], s4)
			copy(ip[16:], d4)
			binary.BigEndian.PutUint16(ip[10:], checksum(ip))
			binary.BigEndian.PutUint16(tcp[0:], uint16(1024+mrand.IntN(60000)))
			binary.BigEndian.PutUint16(tcp[2:], uint16(port))
			binary.BigEndian.PutUint32(tcp[4:], mrand.Uint32())
			tcp[12], tcp[13] = 5<<4, 0x02 // header length, SYN
			binary.BigEndian.PutUint16(tcp[14:], 64240)
			pseudo := append(append(append([]byte{}, s4...), d4...), 0, syscall.IPPROTO_TCP, 0, 20)
			binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))
			if err := syscall.Sendto(fd, pkt, 0, to); err == nil {
				n++
			}
		}
		time.Sleep(time.Millisecond) // a flood, not a livelock of the tunnel's client
	}
	fmt.Printf("%.0f SYNs/s\n", float64(n)/time.Since(start).Seconds())
	return 0
}

// helperUDPFlood: datagrams to addr from `sockets` source ports in turn
// for secs; prints the rate.
func helperUDPFlood(addr string, sockets, secs int) int {
	conns := make([]net.Conn, 0, sockets)
	for range sockets {
		c, err := net.Dial("udp", addr)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		defer c.Close()
		conns = append(conns, c)
	}
	fmt.Println("go")
	msg := make([]byte, 64)
	start := time.Now()
	deadline := start.Add(time.Duration(secs) * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		for _, c := range conns {
			if _, err := c.Write(msg); err == nil {
				n++
			}
		}
	}
	fmt.Printf("%.0f datagrams/s from %d ports\n", float64(n)/time.Since(start).Seconds(), sockets)
	return 0
}

// helperHoldMany: tries to open n TCP connections to addr (32 dialing at
// once) and keeps those that opened idle until secs have passed; prints
// how many it held and how many were refused.
func helperHoldMany(addr string, n, secs int) int {
	fmt.Println("go")
	start := time.Now()
	var mu sync.Mutex
	var held []net.Conn
	var refused atomic.Int64
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if time.Since(start) > time.Duration(secs)*time.Second/2 {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					refused.Add(1)
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Until(start.Add(time.Duration(secs) * time.Second)))
	fmt.Printf("held %d refused %d (of %d tried)\n", len(held), refused.Load(), n)
	for _, c := range held {
		c.Close()
	}
	return 0
}

// malformedDNS are the bad messages of the DNS flood, in turn with good
// queries: a truncated header, a compression loop, zero questions, and a
// query whose EDNS record claims a 64 KiB buffer and carries a 1 KiB option.
func malformedDNS(id uint16) [][]byte {
	good := dnsQuery(id, "ehr.test.internal")
	nx := dnsQuery(id, fmt.Sprintf("n%d.test.internal", id))
	loop := binary.BigEndian.AppendUint16(nil, id)
	loop = append(loop, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1)
	zero := binary.BigEndian.AppendUint16(nil, id)
	zero = append(zero, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	edns := dnsQuery(id, "ehr.test.internal")
	edns[11] = 1 // one additional record
	edns = append(edns, 0, 0, 41, 0xff, 0xff, 0, 0, 0, 0)
	edns = binary.BigEndian.AppendUint16(edns, 4+1024)
	edns = append(edns, 0xfd, 0xe9, 4, 0)
	edns = append(edns, make([]byte, 1024)...)
	return [][]byte{good, good[:5], loop, nx, zero, edns}
}

// helperDNSFlood: good and malformed queries at server from 4 sockets,
// replies drained, for secs; prints the rate and how many replies came.
func helperDNSFlood(server string, secs int) int {
	fmt.Println("go")
	var sent, replies atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(time.Duration(secs) * time.Second)
	for range 4 {
		c, err := net.Dial("udp", server)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		defer c.Close()
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, err := c.Read(buf); err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				replies.Add(1)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := uint16(1); time.Now().Before(deadline); id++ {
				for _, m := range malformedDNS(id) {
					if _, err := c.Write(m); err == nil {
						sent.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("%.0f messages/s (2 in 6 malformed past parsing, 1 truncated), %.0f replies/s\n", float64(sent.Load())/el, float64(replies.Load())/el)
	return 0
}
