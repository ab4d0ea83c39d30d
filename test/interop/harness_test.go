// Package interop drives a real `wardgate run` with the standard WireGuard
// tools from Debian: each client is Debian's wireguard-go with a kernel TUN
// device, configured by `wg` and `ip`, in a network namespace of its own,
// running real curl, dig, ping and iperf3 through the tunnel. Traffic stays
// on loopback and inside the namespaces these tests create.
//
// The tests need root and the tools that `make deps` installs. Without them
// they skip, except under CI=true, where a missing prerequisite fails.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgkey"
)

// wardgateBin is built once by TestMain.
var wardgateBin string

func TestMain(m *testing.M) {
	if h := os.Getenv("WARDGATE_INTEROP_HELPER"); h != "" {
		os.Exit(runHelper(h, os.Args[len(os.Args)-1]))
	}
	dir, err := os.MkdirTemp("", "wardgate-interop-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wardgateBin = filepath.Join(dir, "wardgate")
	build := exec.Command("go", "build", "-o", wardgateBin, "../../cmd/wardgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building wardgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireInterop skips (or, under CI=true, fails) when the test cannot run
// here: it needs root and the Debian tools.
func requireInterop(t testing.TB, tools ...string) {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("interop prerequisite missing under CI=true: %s (make deps installs the tools)", why)
		}
		t.Skipf("interop test skipped: %s", why)
	}
	if runtime.GOOS != "linux" {
		missing("needs linux")
	}
	if os.Geteuid() != 0 {
		missing("needs root")
	}
	for _, tool := range append([]string{"ip", "wg", "wireguard-go"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not installed")
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing("no /dev/net/tun")
	}
}

// keypair is a WireGuard key pair in base64.
type keypair struct{ priv, pub string }

func newKeypair(t testing.TB) keypair {
	t.Helper()
	priv, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return keypair{priv.Base64(), priv.Public().String()}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run runs a command and fails the test when it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// freeUDPPort finds a UDP port on loopback that is free right now.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// netns is a network namespace made by the test, removed when it ends.
type netns struct{ name string }

func newNetns(t testing.TB) *netns {
	t.Helper()
	n := &netns{name: "wgt-" + randHex(4)}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// cmd returns a command that runs inside the namespace.
func (n *netns) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// exec runs a command in the namespace with a timeout and returns its
// combined output and error.
func (n *netns) exec(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.cmd(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// client is a standard WireGuard client: Debian's wireguard-go with a
// kernel TUN device, moved into its own namespace and set up with wg and ip.
type client struct {
	*netns
	label string // who the client stands for, for messages
	keys  keypair
	addr  string // overlay address
	dev   string
	proc  *os.Process // the wireguard-go process (CPU accounting)
}

// clientOpts vary a client from the default (Debian's wireguard-go, routes
// to the overlay and service prefixes, a random listen port).
type clientOpts struct {
	bin        string   // wireguard-go binary; default "wireguard-go" from PATH
	listenPort int      // UDP port in the root namespace; 0: random
	routes     []string // default 100.80.0.0/16 and 100.81.0.0/16
}

// newClient starts wireguard-go in the root namespace (its UDP socket stays
// on loopback), moves the interface into a new namespace and configures it
// there with wg and ip to reach the gateway at 127.0.0.1:port.
func newClient(t testing.TB, name, addr string, keys keypair, gatewayPub string, gatewayPort int, routes ...string) *client {
	return newClientWith(t, name, addr, keys, gatewayPub, gatewayPort, clientOpts{routes: routes})
}

func newClientWith(t testing.TB, name, addr string, keys keypair, peerPub string, peerPort int, o clientOpts) *client {
	t.Helper()
	if o.bin == "" {
		o.bin = "wireguard-go"
	}
	if len(o.routes) == 0 {
		o.routes = []string{"100.80.0.0/16", "100.81.0.0/16"}
	}
	c := startDevice(t, o.bin, name)
	c.keys, c.addr = keys, addr
	keyFile := filepath.Join(t.TempDir(), name+".key")
	if err := os.WriteFile(keyFile, []byte(keys.priv+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", c.netns.name, "wg", "set", c.dev, "private-key", keyFile}
	if o.listenPort != 0 {
		args = append(args, "listen-port", fmt.Sprint(o.listenPort))
	}
	args = append(args, "peer", peerPub, "endpoint", fmt.Sprintf("127.0.0.1:%d", peerPort),
		"allowed-ips", strings.Join(o.routes, ","), "persistent-keepalive", "25")
	run(t, "ip", args...)
	run(t, "ip", "-n", c.netns.name, "addr", "add", addr+"/32", "dev", c.dev)
	run(t, "ip", "-n", c.netns.name, "link", "set", c.dev, "up")
	for _, r := range o.routes {
		run(t, "ip", "-n", c.netns.name, "route", "add", r, "dev", c.dev)
	}
	return c
}

// startDevice starts a wireguard-go binary with a kernel TUN device in the
// root namespace (its UDP socket stays on loopback), waits for its control
// socket and moves the interface into a new namespace, unconfigured. The
// process is ended, by its PID, when the test ends.
func startDevice(t testing.TB, bin, label string) *client {
	t.Helper()
	c := &client{netns: newNetns(t), label: label, dev: "wgi" + randHex(3)}
	wg := exec.Command(bin, "-f", c.dev)
	wg.Env = append(os.Environ(), "LOG_LEVEL=error")
	var logs bytes.Buffer
	wg.Stdout, wg.Stderr = &logs, &logs
	if err := wg.Start(); err != nil {
		t.Fatal(err)
	}
	c.proc = wg.Process
	t.Cleanup(func() {
		wg.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			wg.Process.Kill()
			<-done
		}
	})
	sock := "/var/run/wireguard/" + c.dev + ".sock"
	testwait.Until(t, 10*time.Second, "wireguard-go "+c.dev+" socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	run(t, "ip", "link", "set", c.dev, "netns", c.netns.name)
	return c
}

// gatewayProc is a running `wardgate run`.
type gatewayProc struct {
	dir   string
	cmd   *exec.Cmd
	port  int
	audit string // audit log file

	mu     sync.Mutex
	stderr bytes.Buffer
}

// startGateway writes the files into a temp dir and runs wardgate on them.
// files maps names to contents; gateway.toml must be among them and its
// listen must be 127.0.0.1:port (or 0.0.0.0:port).
func startGateway(t testing.TB, dir string, port int) *gatewayProc {
	t.Helper()
	g := &gatewayProc{dir: dir, port: port, audit: filepath.Join(dir, "audit.log")}
	g.cmd = exec.Command(wardgateBin, "run", "-c", filepath.Join(dir, "gateway.toml"))
	g.cmd.Stdout = &lockedWriter{&g.mu, &g.stderr}
	g.cmd.Stderr = &lockedWriter{&g.mu, &g.stderr}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			g.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("wardgate output:\n%s", g.output())
		}
	})
	testwait.Until(t, 20*time.Second, "wardgate to start", func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("wardgate exited: %v\n%s", err, g.output())
		default:
		}
		return strings.Contains(g.output(), "wardgate running")
	})
	return g
}

func (g *gatewayProc) output() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stderr.String()
}

// events reads the audit log.
func (g *gatewayProc) events(t testing.TB) []map[string]any {
	t.Helper()
	f, err := os.Open(g.audit)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// waitEvent waits for an audit event whose fields include want.
func (g *gatewayProc) waitEvent(t testing.TB, want map[string]any) map[string]any {
	t.Helper()
	var found map[string]any
	testwait.Until(t, 5*time.Second, fmt.Sprintf("audit event %v", want), func() bool {
		for _, ev := range g.events(t) {
			if matches(ev, want) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func matches(ev, want map[string]any) bool {
	for k, v := range want {
		if fmt.Sprint(ev[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// helper runs this test binary inside a namespace as a small tool (a UDP
// client), so the tests need no extra packages for it.
func (n *netns) helper(timeout time.Duration, name, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.cmd(ctx, os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "WARDGATE_INTEROP_HELPER="+name)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runHelper is the helper side: "udpecho ADDR" sends a datagram to ADDR
// and prints the reply.
func runHelper(name, arg string) int {
	switch name {
	case "udpecho":
		c, err := net.Dial("udp", arg)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		defer c.Close()
		msg := "ping-" + randHex(4)
		buf := make([]byte, 1500)
		for try := 0; try < 5; try++ {
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				fmt.Println("read:", err)
				return 1
			}
			if string(buf[:n]) != msg {
				fmt.Printf("reply %q, want %q\n", buf[:n], msg)
				return 1
			}
			fmt.Println("echo ok")
			return 0
		}
		fmt.Println("no reply")
		return 1
	case "connrate":
		return helperConnRate(arg)
	case "hold":
		return helperHold(arg)
	case "acceptclose":
		return helperAcceptClose(arg)
	}
	fmt.Println("unknown helper", name)
	return 2
}

// helperConnRate: "ADDR,SECS" opens and closes TCP connections to ADDR one
// after another for SECS seconds and prints connections per second.
func helperConnRate(arg string) int {
	addr, secsText, _ := strings.Cut(arg, ",")
	secs, _ := time.ParseDuration(secsText + "s")
	n := 0
	start := time.Now()
	for time.Since(start) < secs {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		c.Close()
		n++
	}
	fmt.Printf("%.1f\n", float64(n)/time.Since(start).Seconds())
	return 0
}

// helperAcceptClose: "ADDR" accepts TCP connections and closes each when
// the client does, until killed; it prints "listening" once ready.
func helperAcceptClose(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			c.Read(make([]byte, 1))
			c.Close()
		}()
	}
}

// helperHold: "ADDR,N" opens N TCP connections to ADDR, prints "held N"
// and keeps them open until killed.
func helperHold(arg string) int {
	addr, nText, _ := strings.Cut(arg, ",")
	var n int
	fmt.Sscan(nText, &n)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Printf("held %d\n", len(conns))
	select {}
}
