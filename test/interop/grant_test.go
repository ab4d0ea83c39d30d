package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// TestGrantExpiresInterop: `wardgate grant` gives a standard client a
// service for a few seconds and reloads the running gateway over its
// admin socket; the client opens a TCP connection and holds it; when the
// grant expires the gateway resets that live connection within about a
// second (flow.revoked, reason expired) and refuses new ones; `grant
// prune` then removes the rule.
func TestGrantExpiresInterop(t *testing.T) {
	requireInterop(t, "bash", "cat")
	backend := holdingBackend(t)
	gwKeys, alice := newKeypair(t), newKeypair(t)
	port := freeUDPPort(t)
	policy := fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
endpoint = "127.0.0.1:%d"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["desk"]

[[service]]
name = "records"
site = "leeds"
vip = "100.81.0.20"
endpoints = ["127.0.0.1:%d"]
`, gwKeys.pub, port, alice.pub, backend)
	s := writeSite(t, "leeds", gwKeys, port, policy, "\n[admin]\nsocket = \"admin.sock\"\n")
	gw := startGateway(t, s.dir, port)
	cfg := filepath.Join(s.dir, "gateway.toml")
	c := newClient(t, "alice", "100.80.1.10", alice, gwKeys.pub, port)
	dial := fmt.Sprintf("exec 3<>/dev/tcp/100.81.0.20/%d", backend)

	if out, err := c.exec(10*time.Second, "bash", "-c", dial); err == nil {
		t.Fatalf("alice reached records before the grant: %s", out)
	}
	gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "records", "reason": "no-rule"})

	code, rule, stderr := wardgateCLI(t, "grant", "-c", cfg, "--from", "alice", "--to", fmt.Sprintf("records:%d/tcp", backend), "--for", "8s", "--reason", "interop cover")
	if code != 0 || !strings.Contains(stderr, "reloaded: policy") {
		t.Fatalf("grant: %d\n%s\n%s", code, rule, stderr)
	}
	m := regexp.MustCompile(`(?m)^expires = "(.*)"$`).FindStringSubmatch(rule)
	if m == nil {
		t.Fatalf("no expires in the printed rule:\n%s", rule)
	}
	expires, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := wardgateCLI(t, "grant", "list", "-c", cfg); code != 0 || !strings.Contains(out, "grant-alice-records") {
		t.Errorf("grant list: %d\n%s", code, out)
	}

	// Hold a connection: bash connects, says so, and cat waits on it
	// until the gateway ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold := c.cmd(ctx, "bash", "-c", dial+` || exit 9; echo connected; cat <&3; echo "rc=$?"`)
	var errOut bytes.Buffer
	hold.Stderr = &errOut
	stdout, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := testwait.Recv(t, lines, "the held connection"); l != "connected" {
		t.Fatalf("held connection: %q %s", l, errOut.String())
	}
	gw.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records", "rule": "grant-alice-records"})
	if time.Now().After(expires) {
		t.Fatal("the machine is too slow: the grant expired before the connection was up")
	}

	var last string
	for l := range lines {
		last = l
	}
	ended := time.Now()
	hold.Wait()
	if last != "rc=1" || !strings.Contains(errOut.String(), "reset") {
		t.Errorf("the held connection ended with %q, stderr %q; want a reset", last, errOut.String())
	}
	late := ended.Sub(expires)
	t.Logf("the held connection was reset %v after the grant's expiry", late)
	if late < -100*time.Millisecond || late > 1500*time.Millisecond {
		t.Errorf("the connection ended %v after the grant's expiry; want within about a second after", late)
	}
	gw.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice", "service": "records", "reason": "expired", "rule": "grant-alice-records"})

	if out, err := c.exec(10*time.Second, "bash", "-c", dial); err == nil {
		t.Fatalf("alice reached records after the grant expired: %s", out)
	}
	gw.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "records", "reason": "expired"})

	code, out, stderr := wardgateCLI(t, "grant", "prune", "-c", cfg)
	if code != 0 || !strings.HasPrefix(out, "removed grant-alice-records") || !strings.Contains(stderr, "reloaded: policy") {
		t.Errorf("grant prune: %d\n%s\n%s", code, out, stderr)
	}
}

// holdingBackend accepts TCP connections on loopback and keeps them open
// until the test ends; it returns its port.
func holdingBackend(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}
