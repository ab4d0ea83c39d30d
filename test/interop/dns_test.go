package interop

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testwait"
	"golang.org/x/sys/unix"
)

// dnsmasq is Debian's dnsmasq on a loopback port, answering local records
// only (no upstream of its own), every query it sees logged to a file.
type dnsmasq struct {
	addr string // 127.0.0.1:port
	log  string // the --log-facility file
}

// startDnsmasq runs dnsmasq with the given record options (--host-record=,
// --address=) until the test ends. It always answers N.sync.ext.test, which
// the tests use to know that it has logged everything asked before.
func startDnsmasq(t testing.TB, records ...string) *dnsmasq {
	t.Helper()
	// Tests of other packages run at the same time and take ports too: a
	// port that was free may not be by the time dnsmasq binds it.
	for try := 1; ; try++ {
		d, err := tryDnsmasq(t, records)
		if err == nil {
			return d
		}
		if try == 5 || !strings.Contains(err.Error(), "in use") {
			t.Fatal(err)
		}
	}
}

// tryDnsmasq starts dnsmasq on a free port; the error says why it exited.
func tryDnsmasq(t testing.TB, records []string) (*dnsmasq, error) {
	t.Helper()
	dir := t.TempDir()
	port := freeDualPort(t)
	d := &dnsmasq{addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "dnsmasq.log")}
	args := append([]string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--user=root", "--pid-file=", fmt.Sprintf("--port=%d", port),
		"--listen-address=127.0.0.1", "--bind-interfaces",
		"--log-queries", "--log-facility=" + d.log,
		"--local-ttl=300", "--neg-ttl=300",
		"--address=/sync.ext.test/203.0.113.99",
	}, records...)
	cmd := exec.Command("dnsmasq", args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var exitErr error
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	testwait.Until(t, 10*time.Second, "dnsmasq to answer", func() bool {
		select {
		case err := <-exited:
			exitErr = fmt.Errorf("dnsmasq exited: %v\n%s", err, out.String())
			return true
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion("ready.sync.ext.test.", dns.TypeA)
		r, _, err := c.Exchange(m, d.addr)
		return err == nil && len(r.Answer) == 1
	})
	if exitErr != nil {
		return nil, exitErr
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return d, nil
}

// freeDualPort finds a loopback port free for both UDP and TCP right now.
func freeDualPort(t testing.TB) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
}

// queries counts the queries of type qtype for name that dnsmasq logged.
func (d *dnsmasq) queries(t testing.TB, qtype, name string) int {
	t.Helper()
	data, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "query["+qtype+"] "+name+" from ")
}

// digResult is what dig printed: the status and the A/AAAA/CNAME data of
// the answer section.
type digResult struct {
	status  string
	flags   []string // header flags: qr, aa, tc, rd, ra, ...
	answers []string
	raw     string
}

// dig runs dig in c's namespace against the gateway's overlay address.
func dig(t testing.TB, c *client, args ...string) digResult {
	t.Helper()
	r, err := tryDig(c, args...)
	if err != nil {
		t.Fatalf("%s: dig %s: %v\n%s", c.label, strings.Join(args, " "), err, r.raw)
	}
	return r
}

func tryDig(c *client, args ...string) (digResult, error) {
	full := append([]string{"@100.80.0.1", "+time=2", "+tries=2", "+noall", "+comments", "+answer"}, args...)
	out, err := c.exec(15*time.Second, "dig", full...)
	r := digResult{raw: out}
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(out, "\n") {
		if _, after, ok := strings.Cut(line, "status: "); ok {
			r.status, _, _ = strings.Cut(after, ",")
			continue
		}
		if _, after, ok := strings.Cut(line, ";; flags: "); ok {
			flags, _, _ := strings.Cut(after, ";")
			r.flags = strings.Fields(flags)
			continue
		}
		if strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 5 && f[2] == "IN" {
			r.answers = append(r.answers, f[3]+" "+f[4])
		}
	}
	if r.status == "" {
		return r, errors.New("no status in dig output")
	}
	return r, nil
}

// expect fails the test unless r has the status and exactly the answers.
func (r digResult) expect(t testing.TB, what, status string, answers ...string) {
	t.Helper()
	if r.status != status || strings.Join(r.answers, ",") != strings.Join(answers, ",") {
		t.Errorf("%s: status %s answers %q, want %s %q\n%s", what, r.status, r.answers, status, answers, r.raw)
	}
}

// syncUpstream makes sure dnsmasq has logged every query the gateway sent
// it so far: it asks a fresh name through c and waits for it in the log
// (dnsmasq answers and logs in order).
func syncUpstream(t testing.TB, c *client, up *dnsmasq) {
	t.Helper()
	name := randHex(4) + ".sync.ext.test"
	dig(t, c, name).expect(t, "sync lookup", "NOERROR", "A 203.0.113.99")
	testwait.Until(t, 5*time.Second, "dnsmasq to log "+name, func() bool { return up.queries(t, "A", name) == 1 })
}

// listenInNetns opens a listener inside the named network namespace.
func listenInNetns(t testing.TB, ns, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	inNetns(t, ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln
}

// inNetns runs fn on an OS thread switched into the named namespace. The
// thread is never unlocked, so it ends with fn's goroutine and nothing else
// ever runs there; sockets fn opens stay in the namespace.
func inNetns(t testing.TB, ns string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// startWebHost makes a namespace for an outside web host, joined to the
// root namespace by a veth pair in a random /30 of the benchmarking range
// 198.18.0.0/15 (RFC 2544: not private, so the rebinding filter lets it
// through, and never routed on the internet), serving HTTP on ports 80
// and 8080. It returns the host's address.
func startWebHost(t testing.TB) string {
	t.Helper()
	ns := newNetns(t)
	base := 4 * rand.IntN(1<<14) // a /30 in 198.18.0.0/16
	root := fmt.Sprintf("198.18.%d.%d", base>>8, base&0xff+1)
	host := fmt.Sprintf("198.18.%d.%d", base>>8, base&0xff+2)
	rootDev, hostDev := "wdr"+randHex(4), "wdh"+randHex(4)
	run(t, "ip", "link", "add", rootDev, "type", "veth", "peer", "name", hostDev, "netns", ns.name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", rootDev).Run() })
	run(t, "ip", "addr", "add", root+"/30", "dev", rootDev)
	run(t, "ip", "link", "set", rootDev, "up")
	run(t, "ip", "-n", ns.name, "addr", "add", host+"/30", "dev", hostDev)
	run(t, "ip", "-n", ns.name, "link", "set", hostDev, "up")
	for port, body := range map[int]string{80: "hello from the web host\n", 8080: "port 8080\n"} {
		ln := listenInNetns(t, ns.name, "tcp4", fmt.Sprintf("%s:%d", host, port))
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	// The gateway dials from the root namespace: make sure the host is
	// reachable from there before blaming the gateway.
	hc := &http.Client{Timeout: time.Second}
	testwait.Until(t, 10*time.Second, "the web host from the root namespace", func() bool {
		resp, err := hc.Get("http://" + host + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return host
}

// curlExit runs curl in c's namespace and returns its output and exit code.
func curlExit(t testing.TB, c *client, url string) (string, int) {
	t.Helper()
	out, err := c.exec(10*time.Second, "curl", "-sS", "--max-time", "5", url)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("curl %s: %v", url, err)
	return "", 0
}

// dnsPolicy is the policy of the DNS tests and figures: alice (group
// clinical) may reach ehr, bob (group admin) payroll, both the egress
// service for *.egress.test on port 80.
func dnsPolicy(gw, alice, bob string) string {
	return leedsPolicy(gw, alice, bob) + `
[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["127.0.0.1:9"]
dns = ["ehr.leeds.example"]

[[service]]
name = "payroll"
site = "leeds"
vip = "100.81.0.11"
endpoints = ["127.0.0.1:13"]

[[service]]
name = "web"
egress = ["*.egress.test"]
ports = ["80/tcp"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]

[[rule]]
name = "admin-payroll"
from = ["group:admin"]
to = ["payroll"]

[[rule]]
name = "everyone-web"
from = ["group:clinical", "group:admin"]
to = ["web"]
`
}

// TestDNSInterop: standard WireGuard clients in namespaces use a running
// `wardgate run` as their resolver with dig: each sees exactly the service
// names its policy grants, blocklisted names do not exist, other names go
// to a real dnsmasq through the gateway's cache with rebinding answers
// stripped, and FQDN egress opens a web host in its own namespace only to
// the identity that looked its name up, only after the lookup.
func TestDNSInterop(t *testing.T) {
	requireInterop(t, "dig", "dnsmasq", "curl", "ss")
	web := startWebHost(t)
	records := []string{
		"--host-record=www.ext.test,203.0.113.7",
		"--host-record=bad.ext.test,203.0.113.66",
		"--host-record=c2.ext.test,203.0.113.67",
		"--host-record=x.malware.test,203.0.113.68",
		"--host-record=malware.test,203.0.113.69",
		"--address=/nx.ext.test/",
		"--host-record=mixed.ext.test,203.0.113.9",
		"--host-record=mixed.ext.test,10.0.0.9",
		"--host-record=rebind1.ext.test,192.168.7.7",
		"--host-record=rebind2.ext.test,127.0.0.9",
		"--host-record=rebind3.ext.test,10.1.2.3",
		"--host-record=rebind4.ext.test,100.81.0.10",
		"--host-record=intranet.ext.test,192.168.7.8",
		"--host-record=www.egress.test," + web,
	}
	for i := 1; i <= 100; i++ {
		records = append(records, fmt.Sprintf("--host-record=big.ext.test,203.0.113.%d", i))
	}
	up := startDnsmasq(t, records...)
	gwKeys, alice, bob := newKeypair(t), newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	s := writeSite(t, "leeds", gwKeys, port, dnsPolicy(gwKeys.pub, alice.pub, bob.pub), fmt.Sprintf(`
[dns]
upstream = [%q]
blocklists = ["blocked.txt"]
allow_internal = ["intranet.ext.test"]
egress_ttl_min = "1m"
`, up.addr))
	blocklist := "# test blocklist: a plain name, a hosts-file line, a pattern\nbad.ext.test\n0.0.0.0 c2.ext.test\n**.malware.test\n"
	if err := os.WriteFile(filepath.Join(s.dir, "blocked.txt"), []byte(blocklist), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, s.dir, port)
	// The clients route the overlay and the web host through the tunnel,
	// as a desktop with AllowedIPs = 0.0.0.0/0 would.
	routes := []string{"100.80.0.0/16", "100.81.0.0/16", web + "/32"}
	a := newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port, routes...)
	b := newClient(t, "bob", "100.80.1.11", bob, gwKeys.pub, port, routes...)
	for _, c := range []*client{a, b} {
		testwait.Until(t, 20*time.Second, c.label+"'s first answer through the tunnel", func() bool {
			r, err := tryDig(c, "ready.sync.ext.test")
			return err == nil && r.status == "NOERROR"
		})
	}

	t.Run("service names per identity", func(t *testing.T) {
		dig(t, a, "ehr.test.internal").expect(t, "alice ehr", "NOERROR", "A 100.81.0.10")
		dig(t, a, "EHR.Leeds.Example").expect(t, "alice ehr's extra name", "NOERROR", "A 100.81.0.10")
		dig(t, a, "+tcp", "ehr.test.internal").expect(t, "alice ehr over TCP", "NOERROR", "A 100.81.0.10")
		dig(t, a, "ehr.test.internal", "AAAA").expect(t, "alice ehr AAAA", "NOERROR")
		dig(t, a, "payroll.test.internal").expect(t, "alice payroll", "NXDOMAIN")
		dig(t, a, "nosuch.test.internal").expect(t, "alice a name that does not exist", "NXDOMAIN")
		dig(t, b, "payroll.test.internal").expect(t, "bob payroll", "NOERROR", "A 100.81.0.11")
		dig(t, b, "ehr.test.internal").expect(t, "bob ehr", "NXDOMAIN")
		dig(t, b, "ehr.leeds.example").expect(t, "bob ehr's extra name", "NXDOMAIN")
		dig(t, a, "ehr.test.internal", "ANY").expect(t, "alice ANY", "REFUSED")
		// Names under the overlay domain are never forwarded.
		syncUpstream(t, a, up)
		for _, name := range []string{"payroll.test.internal", "nosuch.test.internal", "ehr.test.internal", "ehr.leeds.example"} {
			if n := up.queries(t, "A", name); n != 0 {
				t.Errorf("dnsmasq saw %d queries for %s, want 0", n, name)
			}
		}
		gw.waitEvent(t, map[string]any{"event": "dns.query", "identity": "alice", "site": "leeds", "qname": "payroll.test.internal", "qtype": "A", "rcode": "NXDOMAIN"})
		gw.waitEvent(t, map[string]any{"event": "dns.query", "identity": "bob", "qname": "payroll.test.internal", "qtype": "A", "rcode": "NOERROR"})
	})

	t.Run("blocklisted names", func(t *testing.T) {
		for _, name := range []string{"bad.ext.test", "c2.ext.test", "x.malware.test"} {
			dig(t, a, name).expect(t, "alice "+name, "NXDOMAIN")
			ev := gw.waitEvent(t, map[string]any{"event": "dns.block", "identity": "alice", "qname": name})
			if ev["rcode"] != "NXDOMAIN" || ev["qtype"] != "A" || ev["rule"] == nil || ev["rule"] == "" {
				t.Errorf("dns.block for %s: %v", name, ev)
			}
		}
		// The apex of a ** pattern is not implied.
		dig(t, a, "malware.test").expect(t, "alice malware.test (apex of a ** entry)", "NOERROR", "A 203.0.113.69")
		syncUpstream(t, a, up)
		for _, name := range []string{"bad.ext.test", "c2.ext.test", "x.malware.test"} {
			if n := up.queries(t, "A", name); n != 0 {
				t.Errorf("a blocked name reached the upstream: %d queries for %s", n, name)
			}
		}
		if n := up.queries(t, "A", "malware.test"); n != 1 {
			t.Errorf("dnsmasq saw %d queries for malware.test, want 1", n)
		}
	})

	t.Run("forwarded and cached", func(t *testing.T) {
		dig(t, a, "www.ext.test").expect(t, "alice www.ext.test", "NOERROR", "A 203.0.113.7")
		dig(t, a, "www.ext.test").expect(t, "alice www.ext.test again", "NOERROR", "A 203.0.113.7")
		dig(t, b, "www.ext.test").expect(t, "bob www.ext.test", "NOERROR", "A 203.0.113.7")
		dig(t, a, "nx.ext.test").expect(t, "alice nx.ext.test", "NXDOMAIN")
		dig(t, b, "nx.ext.test").expect(t, "bob nx.ext.test", "NXDOMAIN")
		syncUpstream(t, a, up)
		if n := up.queries(t, "A", "www.ext.test"); n != 1 {
			t.Errorf("dnsmasq saw %d queries for www.ext.test after three client lookups, want 1 (the rest from the cache)", n)
		}
		if n := up.queries(t, "A", "nx.ext.test"); n != 1 {
			t.Errorf("dnsmasq saw %d queries for nx.ext.test after two client lookups, want 1 (negative cache)", n)
		}
		gw.waitEvent(t, map[string]any{"event": "dns.query", "identity": "bob", "qname": "www.ext.test", "rcode": "NOERROR"})
	})

	t.Run("truncated answers retried over TCP", func(t *testing.T) {
		// dnsmasq's answer for big.ext.test (100 A records) exceeds its
		// 1232-byte UDP limit: the gateway must retry over TCP, cache all
		// of it, and truncate its own UDP answer to the client's size.
		r := dig(t, a, "+ignore", "+bufsize=1232", "big.ext.test")
		if !slices.Contains(r.flags, "tc") || len(r.answers) >= 100 {
			t.Errorf("UDP answer of 100 records to a 1232-byte client: flags %v, %d answers; want tc and fewer\n%s", r.flags, len(r.answers), r.raw)
		}
		r = dig(t, a, "big.ext.test") // dig retries over TCP through the tunnel
		if r.status != "NOERROR" || len(r.answers) != 100 {
			t.Errorf("big.ext.test: %s with %d answers, want NOERROR with 100\n%s", r.status, len(r.answers), r.raw)
		}
		// One UDP try and one TCP try upstream; the client's TCP retry is
		// answered from the cache.
		testwait.Until(t, 5*time.Second, "dnsmasq to log the UDP and TCP queries for big.ext.test", func() bool { return up.queries(t, "A", "big.ext.test") >= 2 })
		syncUpstream(t, a, up)
		if n := up.queries(t, "A", "big.ext.test"); n != 2 {
			t.Errorf("dnsmasq saw %d queries for big.ext.test, want 2 (UDP, then TCP)", n)
		}
	})

	t.Run("rebinding answers stripped", func(t *testing.T) {
		for _, name := range []string{"rebind1.ext.test", "rebind2.ext.test", "rebind3.ext.test", "rebind4.ext.test"} {
			dig(t, a, name).expect(t, "alice "+name+" (private upstream answer)", "NOERROR")
		}
		dig(t, a, "mixed.ext.test").expect(t, "alice mixed.ext.test", "NOERROR", "A 203.0.113.9")
		dig(t, a, "intranet.ext.test").expect(t, "alice intranet.ext.test (allow_internal)", "NOERROR", "A 192.168.7.8")
		// Stripped from the cache too, not only on the first answer.
		dig(t, b, "rebind1.ext.test").expect(t, "bob rebind1.ext.test", "NOERROR")
		syncUpstream(t, a, up)
		if n := up.queries(t, "A", "rebind1.ext.test"); n != 1 {
			t.Errorf("dnsmasq saw %d queries for rebind1.ext.test, want 1", n)
		}
	})

	t.Run("fqdn egress only after the lookup, only for who looked", func(t *testing.T) {
		url := "http://" + web + "/"
		if out, code := curlExit(t, a, url); code != 7 {
			t.Fatalf("alice curl %s before any lookup: exit %d %q, want 7 (refused)", url, code, out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "dst": web + ":80", "reason": "no-service"})

		dig(t, a, "www.egress.test").expect(t, "alice www.egress.test", "NOERROR", "A "+web)
		if out, code := curlExit(t, a, url); code != 0 || out != "hello from the web host\n" {
			t.Fatalf("alice curl %s after the lookup: exit %d %q", url, code, out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "dst": web + ":80", "service": "web", "rule": "everyone-web"})

		// Another port of the same address is not the egress service's.
		if out, code := curlExit(t, a, "http://"+web+":8080/"); code != 7 {
			t.Errorf("alice curl port 8080: exit %d %q, want 7 (refused)", code, out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "dst": web + ":8080", "reason": "no-service"})

		// bob may use the egress service too, but has not looked the name up.
		if out, code := curlExit(t, b, url); code != 7 {
			t.Fatalf("bob curl %s without a lookup: exit %d %q, want 7 (refused)", url, code, out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "bob", "dst": web + ":80", "reason": "no-service"})

		// Once he has (from the cache: the upstream is not asked again),
		// he may.
		dig(t, b, "www.egress.test").expect(t, "bob www.egress.test", "NOERROR", "A "+web)
		if out, code := curlExit(t, b, url); code != 0 || out != "hello from the web host\n" {
			t.Fatalf("bob curl %s after his lookup: exit %d %q", url, code, out)
		}
		gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "bob", "dst": web + ":80", "service": "web"})
		syncUpstream(t, a, up)
		if n := up.queries(t, "A", "www.egress.test"); n != 1 {
			t.Errorf("dnsmasq saw %d queries for www.egress.test, want 1", n)
		}
	})

	// The resolver is served inside the overlay only: the gateway process
	// holds no host socket on port 53, only its WireGuard port.
	t.Run("not on the host", func(t *testing.T) {
		out := run(t, "ss", "-H", "-l", "-n", "-p", "-t", "-u")
		owner := fmt.Sprintf("pid=%d,", gw.cmd.Process.Pid)
		sawWG := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if !strings.Contains(line, owner) || len(f) < 5 {
				continue
			}
			switch {
			case strings.HasSuffix(f[4], ":53"):
				t.Errorf("wardgate listens on the host's port 53: %s", line)
			case strings.HasSuffix(f[4], fmt.Sprintf(":%d", port)):
				sawWG = true
			}
		}
		if !sawWG {
			t.Errorf("no host socket of wardgate (pid %d) on its WireGuard port %d in ss output:\n%s", gw.cmd.Process.Pid, port, out)
		}
	})
}
