package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/dnsfilter"
	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/policy"
)

// The figures of the DNS server, measured side by side in one run (make
// bench): queries per second for a cached forwarded name (www.ext.test,
// from dnsmasq, cache warm) and for a service name (ehr.test.internal),
//
//	(i)   wardgate's handler in-process: dnsfilter.ServeDNS on an unpacked
//	      query, the reply packed, one goroutine per core (no socket);
//	(i')  the same with query_log on, as by default: a dns.query JSON line
//	      per query through the gateway's audit logger into a file;
//	(ii)  wardgate's dnsfilter on a kernel UDP socket, dnsperf over
//	      loopback in a namespace (the same work as unbound's, socket and all);
//	(iii) through the tunnel: dnsperf in a client namespace, through
//	      Debian's wireguard-go (kernel TUN) to a running `wardgate run`
//	      (query_log = false), answered inside its gVisor stack on
//	      100.80.0.1:53;
//	(iv)  Debian's unbound on a loopback port, two threads, the service
//	      name as local-data and ext.test forwarded to the same dnsmasq,
//	      answered from its cache; dnsperf over loopback.
//
// dnsperf runs with the same options each time and shares the machine's
// cores with the server it measures, and with everything else running.
// Each row also gives the CPU time per query of the processes involved,
// which says more than the rate on a busy machine. It is a benchmark, not
// a test: nothing asserts a rate, but every measurement checks that the
// answers were right (all NOERROR, the in-process ones with one answer)
// and that under 1% of dnsperf's queries were lost.

const (
	dnsMeasure   = 3 * time.Second // each dnsperf run and in-process loop
	dnsRounds    = 2               // runs of each measurement; the best counts
	dnsperfConns = 4               // dnsperf -c: client sockets
	dnsperfOut   = 200             // dnsperf -q: queries outstanding
)

// dnsFigure is one measured rate.
type dnsFigure struct {
	qps float64
	// cpu is the CPU time per query of each process that matters, for
	// saying what limits the rate.
	cpu string
}

// procCPU is a process's user+system CPU time so far, in seconds.
func procCPU(b testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

var (
	dnsperfQPS   = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfLost  = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	dnsperfCodes = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// dnsperf runs dnsperf for dnsMeasure against server:port asking name A,
// in ns (nil: the root namespace) from local address src ("" any), and
// returns the rate, with the CPU used by dnsperf and by the processes
// in watch (name -> pid) over the run.
func dnsperf(b testing.TB, ns *netns, src, server string, port int, name string, watch map[string]int) dnsFigure {
	b.Helper()
	data := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(data, []byte(name+" A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"-s", server, "-p", strconv.Itoa(port), "-d", data,
		"-l", strconv.Itoa(int(dnsMeasure / time.Second)), "-c", strconv.Itoa(dnsperfConns),
		"-q", strconv.Itoa(dnsperfOut), "-t", "2"}
	if src != "" {
		args = append(args, "-a", src)
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.cmd(context.Background(), "dnsperf", args...)
	} else {
		cmd = exec.Command("dnsperf", args...)
	}
	before := map[string]float64{}
	for what, pid := range watch {
		before[what] = procCPU(b, pid)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Seconds()
	if err != nil {
		b.Fatalf("dnsperf %v: %v\n%s", args, err, out)
	}
	m := dnsperfQPS.FindSubmatch(out)
	lost := dnsperfLost.FindSubmatch(out)
	codes := dnsperfCodes.FindSubmatch(out)
	if m == nil || lost == nil || codes == nil {
		b.Fatalf("dnsperf output not understood:\n%s", out)
	}
	qps, _ := strconv.ParseFloat(string(m[1]), 64)
	nlost, _ := strconv.ParseFloat(string(lost[1]), 64)
	if nlost > 0.01*qps*dnsMeasure.Seconds() || !strings.HasPrefix(string(codes[1]), "NOERROR ") || strings.Contains(string(codes[1]), ",") {
		b.Fatalf("dnsperf %s at %s: lost %s, response codes %s; want under 1%% lost, all NOERROR\n%s", name, server, lost[1], codes[1], out)
	}
	queries := qps * took
	cpu := []string{fmt.Sprintf("dnsperf %.1f", (cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Seconds()/queries*1e6)}
	for what, pid := range watch {
		cpu = append(cpu, fmt.Sprintf("%s %.1f", what, (procCPU(b, pid)-before[what])/queries*1e6))
	}
	return dnsFigure{qps: qps, cpu: fmt.Sprintf("CPU µs/query: %s (lost %s)", strings.Join(cpu, ", "), lost[1])}
}

// dnsBenchWriter is the ResponseWriter of the in-process figures: it packs
// each reply, as the server would, and keeps the last one's header.
type dnsBenchWriter struct {
	buf     []byte
	rcode   int
	answers int
}

func (w *dnsBenchWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(100, 80, 0, 1), Port: 53}
}
func (w *dnsBenchWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(100, 80, 1, 10), Port: 40000}
}
func (w *dnsBenchWriter) WriteMsg(m *dns.Msg) error {
	var err error
	w.buf, err = m.PackBuffer(w.buf)
	w.rcode, w.answers = m.Rcode, len(m.Answer)
	return err
}
func (w *dnsBenchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *dnsBenchWriter) Close() error                { return nil }
func (w *dnsBenchWriter) TsigStatus() error           { return nil }
func (w *dnsBenchWriter) TsigTimersOnly(bool)         {}
func (w *dnsBenchWriter) Hijack()                     {}

// inProcess runs ServeDNS on a query for name A from alice on every core
// for dnsMeasure and returns queries per second (over all goroutines).
func inProcess(b testing.TB, f *dnsfilter.Filter, name string) dnsFigure {
	b.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	var total atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	cpu0 := procCPU(b, os.Getpid())
	start := time.Now()
	deadline := start.Add(dnsMeasure)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			w := &dnsBenchWriter{}
			n := int64(0)
			for time.Now().Before(deadline) {
				for range 256 {
					// Each query unpacked afresh, as the server hands it over.
					req := new(dns.Msg)
					if err := req.Unpack(wire); err != nil {
						bad.Store(err.Error())
						return
					}
					f.ServeDNS(w, req)
					n++
				}
				if w.rcode != dns.RcodeSuccess || w.answers != 1 {
					bad.Store(fmt.Sprintf("%s: rcode %s with %d answers", name, dns.RcodeToString[w.rcode], w.answers))
					return
				}
			}
			total.Add(n)
		})
	}
	wg.Wait()
	if msg := bad.Load(); msg != nil {
		b.Fatal(msg)
	}
	n := float64(total.Load())
	return dnsFigure{qps: n / time.Since(start).Seconds(),
		cpu: fmt.Sprintf("CPU µs/query: %.1f (%d goroutines)", (procCPU(b, os.Getpid())-cpu0)/n*1e6, runtime.GOMAXPROCS(0))}
}

// startUnbound runs Debian's unbound on a loopback port with two threads:
// ehr.test.internal as local-data, ext.test forwarded to up. It returns
// the port and the process.
func startUnbound(b testing.TB, up *dnsmasq) (int, *os.Process) {
	b.Helper()
	dir := b.TempDir()
	port := freeUDPPort(b)
	upHost, upPort, _ := net.SplitHostPort(up.addr)
	conf := fmt.Sprintf(`server:
	interface: 127.0.0.1
	port: %d
	num-threads: 2
	do-daemonize: no
	use-syslog: no
	logfile: ""
	verbosity: 0
	username: ""
	chroot: ""
	directory: %q
	pidfile: ""
	do-ip6: no
	do-not-query-localhost: no
	module-config: "iterator"
	qname-minimisation: no
	access-control: 127.0.0.0/8 allow
	local-zone: "test." nodefault
	local-zone: "test.internal." static
	local-data: "ehr.test.internal. 60 IN A 100.81.0.10"
forward-zone:
	name: "ext.test."
	forward-addr: %s@%s
`, port, dir, upHost, upPort)
	file := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("unbound", "-d", "-c", file)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() { cmd.Process.Kill(); <-exited })
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, name := range []string{"ehr.test.internal.", "www.ext.test."} {
		testwait.Until(b, 10*time.Second, "unbound to answer "+name, func() bool {
			select {
			case err := <-exited:
				exited <- err
				b.Fatalf("unbound exited: %v\n%s", err, out.String())
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			r, _, err := c.Exchange(m, addr)
			return err == nil && len(r.Answer) == 1
		})
	}
	return port, cmd.Process
}

// dnsFigures are the figures once measured in this process: a run with
// -benchtime Nx calls BenchmarkDNS more than once, and a measurement takes
// about a minute, so the later calls report the first one's figures.
var dnsFigures map[string]dnsFigure

// BenchmarkDNS measures the DNS figures; see the top of this file.
// Run it with
//
//	go test -run '^$' -bench DNS -benchtime 1x ./test/interop/
func BenchmarkDNS(b *testing.B) {
	requireInterop(b, "dnsmasq", "unbound", "dnsperf", "dig")
	if dnsFigures == nil {
		dnsFigures = measureDNS(b)
	}
	figures := dnsFigures
	b.Logf("%-36s %9s %9s  %8s %8s   (best of %d runs of %v; dnsperf -c %d -q %d; %d cores shared by server, client and other work)",
		"DNS queries/s", "cached", "service", "/unbound", "/unbound", dnsRounds, dnsMeasure, dnsperfConns, dnsperfOut, runtime.NumCPU())
	rows := []struct{ key, label string }{
		{"inproc", "(i) wardgate handler in-process"},
		{"inproclog", "(i') the same, query_log on"},
		{"socket", "(ii) wardgate on a UDP socket"},
		{"tunnel", "(iii) through the tunnel"},
		{"unbound", "(iv) unbound, loopback"},
	}
	for _, r := range rows {
		c, sv := figures[r.key+"/cached"], figures[r.key+"/service"]
		rc, rs := c.qps/figures["unbound/cached"].qps, sv.qps/figures["unbound/service"].qps
		b.Logf("  %-34s %9.0f %9.0f  %7.2fx %7.2fx   cached %s; service %s", r.label, c.qps, sv.qps, rc, rs, c.cpu, sv.cpu)
		b.ReportMetric(c.qps, r.key+"-cached-qps")
		b.ReportMetric(sv.qps, r.key+"-service-qps")
		if r.key != "unbound" {
			b.ReportMetric(rc, r.key+"/unbound-cached-x")
			b.ReportMetric(rs, r.key+"/unbound-service-x")
		}
	}
}

// measureDNS starts every setup and measures each in turn.
func measureDNS(b *testing.B) map[string]dnsFigure {
	up := startDnsmasq(b, "--host-record=www.ext.test,203.0.113.7")
	gwKeys, alice, bob := newKeypair(b), newKeypair(b), newKeypair(b)
	policyText := dnsPolicy(gwKeys.pub, alice.pub, bob.pub)
	const cached, service = "www.ext.test", "ehr.test.internal"
	// measure maps "setup/kind" to a measurement; every setup is started
	// first, then all are measured in turn, dnsRounds times, and the best
	// rate of each is kept: the machine is shared, and the best of a few
	// short runs is the one least disturbed by other work.
	measure := map[string]func() dnsFigure{}

	// (i) in-process.
	pol, err := policy.Parse("policy.toml", []byte(policyText))
	if err != nil {
		b.Fatal(err)
	}
	newFilter := func() *dnsfilter.Filter {
		f, err := dnsfilter.New(dnsfilter.Config{
			Policy:          func() *policy.Policy { return pol },
			Upstreams:       []string{up.addr},
			RatePerIdentity: 1e9,
			Burst:           1 << 30,
		})
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	f := newFilter()
	measure["inproc/cached"] = func() dnsFigure { return inProcess(b, f, cached) }
	measure["inproc/service"] = func() dnsFigure { return inProcess(b, f, service) }

	// (i') the same with query_log on (the default): every query a JSON
	// line through the gateway's audit logger into a file, emptied after
	// each measurement.
	logFile, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	lf, err := dnsfilter.New(dnsfilter.Config{
		Policy:          func() *policy.Policy { return pol },
		Upstreams:       []string{up.addr},
		RatePerIdentity: 1e9,
		Burst:           1 << 30,
		QueryLog:        true,
		Audit:           gateway.NewAuditLogger(logFile),
	})
	if err != nil {
		b.Fatal(err)
	}
	logged := func(name string) dnsFigure {
		fig := inProcess(b, lf, name)
		if st, err := logFile.Stat(); err != nil || st.Size() == 0 {
			b.Fatalf("query log empty after the measurement: %v", err)
		}
		if err := logFile.Truncate(0); err != nil {
			b.Fatal(err)
		}
		return fig
	}
	measure["inproclog/cached"] = func() dnsFigure { return logged(cached) }
	measure["inproclog/service"] = func() dnsFigure { return logged(service) }

	// (ii) dnsfilter on a kernel UDP socket in a namespace holding both
	// the gateway's and alice's overlay addresses on its loopback.
	ns := newNetns(b)
	run(b, "ip", "-n", ns.name, "addr", "add", "100.80.0.1/32", "dev", "lo")
	run(b, "ip", "-n", ns.name, "addr", "add", "100.80.1.10/32", "dev", "lo")
	var pc net.PacketConn
	inNetns(b, ns.name, func() (err error) {
		pc, err = net.ListenPacket("udp4", "100.80.0.1:53")
		return err
	})
	sf := newFilter()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sf.Serve(ctx, pc, nil) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-served }) }
	b.Cleanup(stop)
	self := map[string]int{"wardgate (this test binary)": os.Getpid()}
	measure["socket/cached"] = func() dnsFigure { return dnsperf(b, ns, "100.80.1.10", "100.80.0.1", 53, cached, self) }
	measure["socket/service"] = func() dnsFigure { return dnsperf(b, ns, "100.80.1.10", "100.80.0.1", 53, service, self) }

	// (iii) through the tunnel to `wardgate run`.
	port := freeUDPPort(b)
	s := writeSiteOn(b, "0.0.0.0", "leeds", gwKeys, port, policyText, fmt.Sprintf(`
[dns]
upstream = [%q]
query_log = false
rate_per_identity = 10000000.0
`, up.addr))
	gw := startGateway(b, s.dir, port)
	a := newClient(b, "alice", "100.80.1.10", alice, gwKeys.pub, port)
	testwait.Until(b, 20*time.Second, "alice's first answer through the tunnel", func() bool {
		r, err := tryDig(a, cached)
		return err == nil && r.status == "NOERROR" && len(r.answers) == 1
	})
	tunnel := map[string]int{"wardgate": gw.cmd.Process.Pid, "client wireguard-go": a.proc.Pid}
	measure["tunnel/cached"] = func() dnsFigure { return dnsperf(b, a.netns, "", "100.80.0.1", 53, cached, tunnel) }
	measure["tunnel/service"] = func() dnsFigure { return dnsperf(b, a.netns, "", "100.80.0.1", 53, service, tunnel) }

	// (iv) unbound.
	ubPort, ub := startUnbound(b, up)
	ubw := map[string]int{"unbound": ub.Pid}
	measure["unbound/cached"] = func() dnsFigure { return dnsperf(b, nil, "", "127.0.0.1", ubPort, cached, ubw) }
	measure["unbound/service"] = func() dnsFigure { return dnsperf(b, nil, "", "127.0.0.1", ubPort, service, ubw) }

	// Warm every cache: the in-process filter's and the socket filter's
	// (the tunnel's and unbound's were warmed by their readiness checks).
	for _, f := range []*dnsfilter.Filter{f, lf} {
		w := &dnsBenchWriter{}
		q := new(dns.Msg)
		q.SetQuestion(cached+".", dns.TypeA)
		f.ServeDNS(w, q)
		if w.rcode != dns.RcodeSuccess || w.answers != 1 {
			b.Fatalf("in-process warm-up: rcode %s, %d answers", dns.RcodeToString[w.rcode], w.answers)
		}
	}
	if out, err := ns.exec(10*time.Second, "dig", "+short", "-b", "100.80.1.10", "@100.80.0.1", cached); err != nil || strings.TrimSpace(out) != "203.0.113.7" {
		b.Fatalf("socket warm-up: %v: %q", err, out)
	}

	figures := map[string]dnsFigure{}
	order := []string{"inproc", "inproclog", "socket", "tunnel", "unbound"}
	for round := 1; round <= dnsRounds; round++ {
		for _, kind := range []string{"cached", "service"} {
			for _, setup := range order {
				key := setup + "/" + kind
				if fig := measure[key](); fig.qps > figures[key].qps {
					figures[key] = fig
				}
			}
		}
	}

	return figures
}
