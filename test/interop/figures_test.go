package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// The figures of the data plane, measured side by side in one run (make
// bench). They are benchmarks, not tests: nothing here asserts a timing.
//
//	(a) plain WireGuard: two kernel-TUN wireguard-go devices in two
//	    namespaces, iperf3 through them;
//	(b) the same client through wardgate to iperf3 on loopback;
//	(c) iperf3 on loopback without tunnels (the ceiling).
//
// (a) and the client of (b) use the current wireguard-go (go install), as
// Debian's 2022 build lacks the TUN offloads.

// wireguardGoVersion is the wireguard-go wardgate builds against.
const wireguardGoVersion = "v0.0.0-20260522210424-ecfc5a8d5446"

// currentWireguardGo installs the current wireguard-go once per machine.
func currentWireguardGo(b testing.TB) string {
	dir := filepath.Join(os.TempDir(), "wardgate-bench-bin")
	bin := filepath.Join(dir, "wireguard")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "golang.zx2c4.com/wireguard@"+wireguardGoVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go install wireguard-go: %v\n%s", err, out)
	}
	return bin
}

// iperfResult is what one iperf3 run moved.
type iperfResult struct {
	bytes float64
	bps   float64
}

// iperfServer starts `iperf3 -s` (in ns, or the root namespace when nil)
// bound to addr:port, until the benchmark ends.
func iperfServer(b testing.TB, ns *netns, addr string, port int) {
	args := []string{"-s", "-B", addr, "-p", strconv.Itoa(port)}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.cmd(context.Background(), "iperf3", args...)
	} else {
		cmd = exec.Command("iperf3", args...)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testwait.Until(b, 5*time.Second, "iperf3 server", func() bool {
		probe := []string{"-c", addr, "-p", strconv.Itoa(port), "-n", "1K", "-J"}
		if ns != nil {
			return ns.cmd(context.Background(), "iperf3", probe...).Run() == nil
		}
		return exec.Command("iperf3", probe...).Run() == nil
	})
}

// iperf runs an iperf3 client for secs seconds with streams parallel streams.
func iperf(b testing.TB, ns *netns, addr string, port, streams, secs int) iperfResult {
	args := []string{"-c", addr, "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J"}
	var out []byte
	var err error
	if ns != nil {
		out, err = ns.cmd(context.Background(), "iperf3", args...).Output()
	} else {
		out, err = exec.Command("iperf3", args...).Output()
	}
	if err != nil {
		b.Fatalf("iperf3 %v: %v\n%s", args, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("iperf3 JSON: %v", err)
	}
	return iperfResult{r.End.SumReceived.Bytes, r.End.SumReceived.BitsPerSecond}
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(b testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// rssBytes is a process's resident set size.
func rssBytes(b testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// measured runs iperf with CPU accounting of pid (0: none).
type measured struct {
	name     string
	streams  int
	mbps     float64
	cpuPerGB float64
}

func measure(b testing.TB, name string, ns *netns, addr string, port, streams, secs, pid int) measured {
	var before float64
	if pid != 0 {
		before = cpuSeconds(b, pid)
	}
	r := iperf(b, ns, addr, port, streams, secs)
	m := measured{name: name, streams: streams, mbps: r.bps / 1e6}
	if pid != 0 {
		m.cpuPerGB = (cpuSeconds(b, pid) - before) / (r.bytes / 1e9)
	}
	return m
}

// BenchmarkDataPlane reports throughput (single stream and 4 streams) and
// CPU per GB for (a), (b) with listen on 0.0.0.0 (wireguard-go's bind),
// (b1) with listen on 127.0.0.1 (wardgate's one-address bind), (c), then new TCP connections per second through
// wardgate against the same server direct on loopback, and the gateway's
// memory per idle flow with 1,000 flows open. One iteration is the whole
// measurement: run with -benchtime 1x.
func BenchmarkDataPlane(b *testing.B) {
	requireInterop(b, "iperf3", "ping")
	wgBin := currentWireguardGo(b)
	secs := 5
	if s := os.Getenv("WARDGATE_BENCH_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}

	for i := 0; i < b.N; i++ {
		var rows []measured

		// (c) loopback ceiling.
		loPort := freeTCPPort(b)
		iperfServer(b, nil, "127.0.0.1", loPort)

		// (a) plain WireGuard between two namespaces.
		ka, kb := newKeypair(b), newKeypair(b)
		pa, pb := freeUDPPort(b), freeUDPPort(b)
		wa := newClientWith(b, "plain-a", "100.90.0.1", ka, kb.pub, pb, clientOpts{bin: wgBin, listenPort: pa, routes: []string{"100.90.0.2/32"}})
		wb := newClientWith(b, "plain-b", "100.90.0.2", kb, ka.pub, pa, clientOpts{bin: wgBin, listenPort: pb, routes: []string{"100.90.0.1/32"}})
		iperfServer(b, wb.netns, "100.90.0.2", 5201)

		// (b) the same kind of client through wardgate.
		gwKeys, ck := newKeypair(b), newKeypair(b)
		gwPort := freeUDPPort(b)
		connPort := startAcceptClose(b)
		pol := benchPolicy(gwKeys.pub, ck.pub, loPort, connPort)
		s := writeSiteOn(b, "0.0.0.0", "leeds", gwKeys, gwPort, pol, "")
		gw := startGateway(b, s.dir, gwPort)
		c := newClientWith(b, "bench", "100.80.1.10", ck, gwKeys.pub, gwPort, clientOpts{bin: wgBin})
		// (b1) the same with listen on one address: another gateway and
		// client, alike but for the listen host.
		gw1Port := freeUDPPort(b)
		s1 := writeSiteOn(b, "127.0.0.1", "leeds", gwKeys, gw1Port, pol, "")
		gw1 := startGateway(b, s1.dir, gw1Port)
		c1 := newClientWith(b, "bench1", "100.80.1.10", ck, gwKeys.pub, gw1Port, clientOpts{bin: wgBin})
		for _, cl := range []*client{c, c1} {
			testwait.Until(b, 10*time.Second, "tunnel to wardgate", func() bool {
				_, err := cl.exec(3*time.Second, "ping", "-c", "1", "-W", "1", "100.80.0.1")
				return err == nil
			})
		}

		const perStreams = 4 // rows per stream count: (a), (b), (b1), (c)
		for _, streams := range []int{1, 4} {
			rows = append(rows,
				measure(b, "(a) plain WireGuard", wa.netns, "100.90.0.2", 5201, streams, secs, wb.proc.Pid),
				measure(b, "(b) wardgate 0.0.0.0", c.netns, "100.81.0.10", loPort, streams, secs, gw.cmd.Process.Pid),
				measure(b, "(b1) wardgate 127.0.0.1", c1.netns, "100.81.0.10", loPort, streams, secs, gw1.cmd.Process.Pid),
				measure(b, "(c) loopback", nil, "127.0.0.1", loPort, streams, secs, 0),
			)
		}
		b.Logf("\n%-24s %7s %12s %12s", "path", "streams", "Mbit/s", "CPU-s/GB")
		for _, r := range rows {
			cpu := "-"
			if r.cpuPerGB > 0 {
				cpu = fmt.Sprintf("%.2f", r.cpuPerGB)
			}
			b.Logf("%-24s %7d %12.0f %12s", r.name, r.streams, r.mbps, cpu)
		}
		for j := 0; j+perStreams <= len(rows); j += perStreams {
			a := rows[j]
			for _, w := range []struct {
				label, metric string
				m             measured
			}{{"(b)", "b", rows[j+1]}, {"(b1)", "b1", rows[j+2]}} {
				b.Logf("streams=%d: %s/(a) throughput %.2fx, CPU per GB %.2fx", a.streams, w.label, w.m.mbps/a.mbps, w.m.cpuPerGB/a.cpuPerGB)
				b.ReportMetric(w.m.mbps/a.mbps, fmt.Sprintf("%s/a-throughput-P%d", w.metric, a.streams))
				b.ReportMetric(w.m.cpuPerGB/a.cpuPerGB, fmt.Sprintf("%s/a-cpu-per-GB-P%d", w.metric, a.streams))
			}
		}

		// New connections per second: plain WireGuard, through wardgate
		// (policy checked, backend dialed, closed), and direct on loopback.
		startHelperServer(b, wb.netns, "acceptclose", "100.90.0.2:5300")
		plain := connRate(b, wa.netns, "100.90.0.2:5300", secs)
		through := connRate(b, c.netns, fmt.Sprintf("100.81.0.11:%d", connPort), secs)
		direct := connRate(b, nil, fmt.Sprintf("127.0.0.1:%d", connPort), secs)
		b.Logf("new TCP connections/s, one client, one at a time: plain WireGuard %.0f, through wardgate %.0f (%.2fx), direct on loopback %.0f",
			plain, through, through/plain, direct)
		b.ReportMetric(through/plain, "b/a-conns-per-s")
		b.ReportMetric(through, "conns/s-through")

		// Memory per idle flow.
		perFlow := idleFlowMemory(b, c.netns, gw.cmd.Process.Pid, fmt.Sprintf("100.81.0.11:%d", connPort), 1000)
		b.Logf("gateway RSS per idle flow (1,000 flows): %.1f KiB", perFlow/1024)
		b.ReportMetric(perFlow/1024, "KiB/idle-flow")
	}
}

func benchPolicy(gwPub, clientPub string, iperfPort, connPort int) string {
	return fmt.Sprintf(`
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "bench.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "bench-client"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["bench"]

[[service]]
name = "iperf"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%d"]

[[service]]
name = "accept-close"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:%d"]

[[rule]]
name = "bench"
from = ["group:bench"]
to = ["iperf", "accept-close"]
`, gwPub, clientPub, iperfPort, connPort)
}

func freeTCPPort(b testing.TB) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAcceptClose is a TCP server on loopback that accepts and closes;
// held connections (for the memory figure) stay open until the client
// closes them.
func startAcceptClose(b testing.TB) int { return startAcceptCloseOn(b, "127.0.0.1:0") }

func startAcceptCloseOn(b testing.TB, addr string) int {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1)
				c.Read(buf) // until the client closes
				c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// connRate runs the "connrate" helper in ns (or directly) for secs.
func connRate(b testing.TB, ns *netns, addr string, secs int) float64 {
	arg := fmt.Sprintf("%s,%d", addr, secs)
	var out string
	var err error
	if ns != nil {
		out, err = ns.helper(time.Duration(secs+30)*time.Second, "connrate", arg)
	} else {
		cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
		cmd.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER=connrate")
		var o []byte
		o, err = cmd.CombinedOutput()
		out = string(o)
	}
	if err != nil {
		b.Fatalf("connrate %s: %v: %s", addr, err, out)
	}
	rate, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		b.Fatalf("connrate output %q", out)
	}
	return rate
}

// startHelperServer runs a helper server in ns until the benchmark ends.
func startHelperServer(b testing.TB, ns *netns, name, arg string) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.cmd(ctx, os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER="+name)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "listening" {
		b.Fatalf("%s helper: %q", name, sc.Text())
	}
}

// idleFlowMemory opens n idle flows from ns through the gateway and returns
// the gateway's RSS growth per flow.
func idleFlowMemory(b testing.TB, ns *netns, pid int, addr string, n int) float64 {
	before := rssBytes(b, pid)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.cmd(ctx, os.Args[0], "-test.run=^$", fmt.Sprintf("%s,%d", addr, n))
	cmd.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER=hold")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "held") {
		b.Fatalf("hold helper: %q", sc.Text())
	}
	after := rssBytes(b, pid)
	return (after - before) / float64(n)
}

// BenchmarkSiteLink compares a flow served locally with the same flow to
// a service homed at another site, side by side in one run. Leeds decides
// the relayed flow on its first packet and then forwards its packets over
// the two gateways' WireGuard session (decrypt from the client, encrypt to
// York); York decides again and terminates it. It reports iperf3
// throughput (1 and 4 streams), Leeds's CPU seconds per GB (its cost of a
// relayed flow against serving one), and new TCP connections per second,
// each as relayed/local. The client is the current wireguard-go. Run with
// -benchtime 1x.
func BenchmarkSiteLink(b *testing.B) {
	requireInterop(b, "iperf3", "ping")
	wgBin := currentWireguardGo(b)
	secs := 5
	if s := os.Getenv("WARDGATE_BENCH_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	for i := 0; i < b.N; i++ {
		// The same servers twice, on two loopback addresses: a backend
		// address belongs to one service.
		iperfPort, connPort, connPort2 := freeTCPPort(b), startAcceptClose(b), startAcceptCloseOn(b, "127.0.0.2:0")
		iperfServer(b, nil, "127.0.0.1", iperfPort)
		iperfServer(b, nil, "127.0.0.2", iperfPort)
		leedsKeys, yorkKeys, ck := newKeypair(b), newKeypair(b), newKeypair(b)
		leedsPort, yorkPort := freeUDPPort(b), freeUDPPort(b)
		pol := fmt.Sprintf(`
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "bench.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
endpoint = "127.0.0.1:%d"

[[site]]
name = "york"
key = %q
address = "100.80.0.2"
endpoint = "127.0.0.1:%d"

[[identity]]
name = "bench-client"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["bench"]

[[service]]
name = "iperf-local"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:%[6]d"]

[[service]]
name = "iperf-remote"
site = "york"
vip = "100.81.0.20"
endpoints = ["127.0.0.2:%[6]d"]

[[service]]
name = "conn-local"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:%[7]d"]

[[service]]
name = "conn-remote"
site = "york"
vip = "100.81.0.21"
endpoints = ["127.0.0.2:%[8]d"]

[[rule]]
name = "bench"
from = ["group:bench"]
to = ["*"]
`, leedsKeys.pub, leedsPort, yorkKeys.pub, yorkPort, ck.pub, iperfPort, connPort, connPort2)
		// Leeds counts a finished relayed flow against the client's flow cap
		// until the relay's FIN linger (2 s) is over, so the connection
		// rate would hit the default cap (1,024) at about 450/s: raised, to
		// measure the path rather than the cap.
		limits := "flows_per_identity = 100000\n"
		leeds := startGateway(b, writeSiteOn(b, "0.0.0.0", "leeds", leedsKeys, leedsPort, pol, limits).dir, leedsPort)
		york := startGateway(b, writeSiteOn(b, "0.0.0.0", "york", yorkKeys, yorkPort, pol, limits).dir, yorkPort)
		c := newClientWith(b, "bench", "100.80.1.10", ck, leedsKeys.pub, leedsPort, clientOpts{bin: wgBin})
		testwait.Until(b, 20*time.Second, "a flow across the site link", func() bool {
			_, err := c.exec(5*time.Second, "iperf3", "-c", "100.81.0.20", "-p", strconv.Itoa(iperfPort), "-n", "1K")
			return err == nil
		})
		leedsPid, yorkPid := leeds.cmd.Process.Pid, york.cmd.Process.Pid
		b.Logf("\n%-26s %7s %10s %14s %14s", "path", "streams", "Mbit/s", "leeds CPU-s/GB", "york CPU-s/GB")
		var leedsCPU, gb [2]float64 // local, relayed: totals over both stream counts
		for _, streams := range []int{1, 4} {
			var rows [2]measured
			for j, vip := range []string{"100.81.0.10", "100.81.0.20"} {
				l0, y0 := cpuSeconds(b, leedsPid), cpuSeconds(b, yorkPid)
				r := iperf(b, c.netns, vip, iperfPort, streams, secs)
				lcpu, ycpu := cpuSeconds(b, leedsPid)-l0, cpuSeconds(b, yorkPid)-y0
				leedsCPU[j] += lcpu
				gb[j] += r.bytes / 1e9
				rows[j] = measured{name: []string{"local (leeds serves)", "relayed (york serves)"}[j], streams: streams,
					mbps: r.bps / 1e6, cpuPerGB: lcpu / (r.bytes / 1e9)}
				b.Logf("%-26s %7d %10.0f %14.2f %14.2f", rows[j].name, streams, rows[j].mbps, rows[j].cpuPerGB, ycpu/(r.bytes/1e9))
			}
			b.Logf("streams=%d: relayed/local throughput %.2fx, leeds CPU per GB %.2fx", streams, rows[1].mbps/rows[0].mbps, rows[1].cpuPerGB/rows[0].cpuPerGB)
			b.ReportMetric(rows[1].mbps/rows[0].mbps, fmt.Sprintf("relayed/local-throughput-P%d", streams))
			b.ReportMetric(rows[1].cpuPerGB/rows[0].cpuPerGB, fmt.Sprintf("leeds-cpu-per-GB-relayed/local-P%d", streams))
		}
		b.ReportMetric((leedsCPU[1]/gb[1])/(leedsCPU[0]/gb[0]), "leeds-cpu-per-GB-relayed/local")
		local := connRate(b, c.netns, fmt.Sprintf("100.81.0.11:%d", connPort), secs)
		relayed := connRate(b, c.netns, fmt.Sprintf("100.81.0.21:%d", connPort2), secs)
		b.Logf("new TCP connections/s, one at a time: local %.0f, relayed %.0f (%.2fx)", local, relayed, relayed/local)
		b.ReportMetric(relayed/local, "relayed/local-conns-per-s")
	}
}
