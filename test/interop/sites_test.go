package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// lanHost is a namespace joined to the root namespace by a veth pair: a
// legacy device on a site LAN, without WireGuard.
type lanHost struct {
	*netns
	rootAddr string // the gateway host's side
}

// newLANHost makes the namespace and the veth pair: rootAddr/29 on the
// root side, hostAddrs (the first /29, others /32) on the device side.
func newLANHost(t testing.TB, rootAddr string, hostAddrs ...string) *lanHost {
	t.Helper()
	h := &lanHost{netns: newNetns(t), rootAddr: rootAddr}
	root, peer := "vwg"+randHex(3), "vwp"+randHex(3)
	run(t, "ip", "link", "add", root, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", root).Run() })
	run(t, "ip", "link", "set", peer, "netns", h.netns.name)
	run(t, "ip", "addr", "add", rootAddr+"/29", "dev", root)
	run(t, "ip", "link", "set", root, "up")
	for i, a := range hostAddrs {
		plen := "/32"
		if i == 0 {
			plen = "/29"
		}
		run(t, "ip", "-n", h.netns.name, "addr", "add", a+plen, "dev", peer)
	}
	run(t, "ip", "-n", h.netns.name, "link", "set", peer, "up")
	return h
}

// concurrentFlows is how many relayed flows the load subtest holds open at
// once (curl's --parallel-max allows at most 300).
const concurrentFlows = 300

// siteWeb is York's web server on loopback: "/" answers at once, "/slow"
// trickles a line every 100 ms for a minute (a long-lived flow),
// "/barrier" answers only once concurrentFlows requests are in at the same
// time (proof that they were concurrent), or "timeout" after 15 s.
type siteWeb struct {
	port    int
	arrived atomic.Int32 // requests to /barrier so far
}

func startSiteWeb(t testing.TB) *siteWeb {
	t.Helper()
	web := &siteWeb{}
	all := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from york\n") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		for range 600 {
			if _, err := fmt.Fprint(w, "tick\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/barrier", func(w http.ResponseWriter, r *http.Request) {
		if web.arrived.Add(1) == concurrentFlows {
			close(all)
		}
		select {
		case <-all:
			fmt.Fprint(w, "ok\n")
		case <-time.After(15 * time.Second):
			fmt.Fprint(w, "timeout\n")
		}
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	web.port = ln.Addr().(*net.TCPAddr).Port
	return web
}

// sitePair is two `wardgate run` processes, Leeds and York, sharing one
// policy: a desktop (alice) homed at Leeds, a LAN device (xray-2) behind
// Leeds's listener, and York's service records, which both may reach.
type sitePair struct {
	leeds, york *gatewayProc
	alice       *client
	lan         *lanHost // nil unless asked for
	lanPort     int      // Leeds's listener for records
	records     string   // records' URL at its VIP

	leedsKeys, yorkKeys, aliceKeys keypair
	leedsPort, yorkPort            int // the gateways' WireGuard ports
	web                            *siteWeb
}

// sitePairOpts vary a pair from the default.
type sitePairOpts struct {
	// lan adds the LAN device and Leeds's listener (they share fixed
	// addresses: one pair with LAN at a time).
	lan bool
	// limits are extra [limits] lines for both gateways.
	limits string
}

// newSitePair starts both gateways (each with an admin socket, for
// `wardgate reload -c`) and alice's client, and waits until each gateway's
// site link to the other is up.
func newSitePair(t *testing.T, o sitePairOpts) *sitePair {
	t.Helper()
	p := &sitePair{web: startSiteWeb(t)}
	p.leedsKeys, p.yorkKeys, p.aliceKeys = newKeypair(t), newKeypair(t), newKeypair(t)
	p.leedsPort, p.yorkPort = freeUDPPort(t), freeUDPPort(t)
	admin := o.limits + "\n[admin]\nsocket = \"admin.sock\"\n"
	leedsExtra := admin
	if o.lan {
		p.lanPort = freeTCPPort(t)
		p.lan = newLANHost(t, "198.18.5.1", "198.18.5.2", "198.18.5.3")
		leedsExtra += fmt.Sprintf("\n[[listener]]\nlisten = \"198.18.5.1:%d\"\nservice = \"records\"\n", p.lanPort)
	}
	pol := p.policy(true)
	p.leeds = startGateway(t, writeSite(t, "leeds", p.leedsKeys, p.leedsPort, pol, leedsExtra).dir, p.leedsPort)
	p.york = startGateway(t, writeSite(t, "york", p.yorkKeys, p.yorkPort, pol, admin).dir, p.yorkPort)
	for _, g := range []*gatewayProc{p.leeds, p.york} {
		testwait.Until(t, 10*time.Second, "the site link up", func() bool { return strings.Contains(g.output(), "site link up") })
	}
	p.alice = newClient(t, "alice", "100.80.1.10", p.aliceKeys, p.leedsKeys.pub, p.leedsPort)
	p.records = fmt.Sprintf("http://100.81.0.20:%d/", p.web.port)
	return p
}

// policy is the shared policy; clinical says whether the rule lets the
// clinical group (alice) reach records. The modality group (xray-2) may
// always.
func (p *sitePair) policy(clinical bool) string {
	from := `"group:modality"`
	if clinical {
		from = `"group:clinical", "group:modality"`
	}
	return fmt.Sprintf(`
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

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
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[identity]]
name = "xray-2"
source = "198.18.5.2/32"
site = "leeds"
groups = ["modality"]

[[service]]
name = "records"
site = "york"
vip = "100.81.0.20"
endpoints = ["127.0.0.1:%d"]

[[rule]]
name = "records-for-clinical-and-modalities"
from = [%s]
to = ["records"]
`, p.leedsKeys.pub, p.leedsPort, p.yorkKeys.pub, p.yorkPort, p.aliceKeys.pub, p.web.port, from)
}

// reload rewrites g's policy.toml and applies it with `wardgate reload -c`,
// which returns once the gateway runs it.
func reload(t testing.TB, g *gatewayProc, policy string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, "policy.toml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := wardgateCLI(t, "reload", "-c", filepath.Join(g.dir, "gateway.toml"))
	if code != 0 || !strings.HasPrefix(out, "reloaded: policy ") {
		t.Errorf("reload %s: %d %q %s", g.dir, code, out, stderr)
	}
}

// stop ends g with SIGTERM and waits until the process is gone (startGateway
// reaps it; its cleanup then finds it already ended).
func (g *gatewayProc) stop(t testing.TB) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	testwait.Until(t, 15*time.Second, "wardgate to exit", func() bool {
		return g.cmd.Process.Signal(syscall.Signal(0)) != nil
	})
}

// restartYork starts York again (stopped) and has alice's client try a
// new flow until one gets through: within 4 s of York running, and no
// attempt reset (a stale flow or session), only refused.
func (p *sitePair) restartYork(t *testing.T) {
	t.Helper()
	p.york = startGateway(t, p.york.dir, p.york.port)
	running := time.Now()
	var errs []string
	for {
		out, err := p.alice.exec(5*time.Second, "curl", "-sS", "--max-time", "1", p.records)
		if err == nil {
			if out != "hello from york\n" {
				t.Fatalf("curl records: %q", out)
			}
			break
		}
		errs = append(errs, strings.TrimSpace(out))
		if time.Since(running) > 10*time.Second {
			t.Fatalf("no flow to York 10 s after its restart; curl said:\n%s", strings.Join(errs, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(running)
	t.Logf("first flow %v after York was running, %d failed attempts: %q", took.Round(time.Millisecond), len(errs), errs)
	if took > 4*time.Second {
		t.Errorf("first flow %v after York was running, want < 4 s", took)
	}
	for _, e := range errs {
		if strings.Contains(strings.ToLower(e), "reset") {
			t.Errorf("an attempt was reset (a stale flow or session, not a refusal): %s", e)
		}
	}
}

// find returns g's audit events whose fields include want.
func (g *gatewayProc) find(t testing.TB, want map[string]any) []map[string]any {
	var out []map[string]any
	for _, ev := range g.events(t) {
		if matches(ev, want) {
			out = append(out, ev)
		}
	}
	return out
}

// sameFlow checks that the home and serving gateways' records of one flow
// agree on src, dst and community_id.
func sameFlow(t testing.TB, home, serving map[string]any) {
	t.Helper()
	for _, k := range []string{"community_id", "src", "dst"} {
		if home[k] == nil || fmt.Sprint(home[k]) != fmt.Sprint(serving[k]) {
			t.Errorf("%s differs: leeds %v, york %v", k, home[k], serving[k])
		}
	}
}

// curlFailsFast runs curl, which must fail (refused or reset) well before
// its own timeout, and returns its output.
func curlFailsFast(t testing.TB, ns *netns, url string) string {
	t.Helper()
	start := time.Now()
	out, err := ns.exec(10*time.Second, "curl", "-sS", "--max-time", "5", url)
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("curl %s succeeded: %q", url, out)
	}
	if took > time.Second {
		t.Errorf("curl %s took %v to fail (%q), want a refusal at once", url, took, out)
	}
	return out
}

// TestSitesInterop: two `wardgate run` processes share one policy; a
// standard WireGuard client homed at Leeds reaches a service homed at York,
// relayed as packets over the gateways' WireGuard session and decided at
// both. Each subtest runs its own pair of gateways.
func TestSitesInterop(t *testing.T) {
	requireInterop(t, "curl")

	t.Run("a desktop at Leeds reaches a service at York", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records)
		if err != nil || out != "hello from york\n" {
			t.Fatalf("curl records: %v: %q", err, out)
		}
		there := p.york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records", "from_site": "leeds"})
		here := p.leeds.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records", "community_id": there["community_id"]})
		if here["from_site"] != nil {
			t.Errorf("Leeds's record has from_site %v", here["from_site"])
		}
		sameFlow(t, here, there)
		if here["flow"] == there["flow"] {
			t.Errorf("flow IDs are per gateway, yet both are %v", here["flow"])
		}
	})

	t.Run("York's policy without the rule refuses it", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		reload(t, p.york, p.policy(false))
		out := curlFailsFast(t, p.alice.netns, p.records)
		p.york.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "records", "from_site": "leeds"})
		// Leeds still allows it: the refusal is York's.
		p.leeds.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records"})
		t.Logf("curl: %s", strings.TrimSpace(out))
	})

	t.Run("a new flow right after York restarts", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		if out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records); err != nil {
			t.Fatalf("curl records before the restart: %v: %q", err, out)
		}
		p.york.stop(t)
		p.restartYork(t)
	})

	t.Run("a LAN device reaches it through the Leeds listener", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{lan: true})
		url := fmt.Sprintf("http://198.18.5.1:%d/", p.lanPort)
		out, err := p.lan.exec(15*time.Second, "curl", "-sS", "--max-time", "10", "--interface", "198.18.5.2", url)
		if err != nil || out != "hello from york\n" {
			t.Fatalf("curl from xray-2: %v: %q", err, out)
		}
		there := p.york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "xray-2", "service": "records", "from_site": "leeds"})
		here := p.leeds.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "xray-2", "service": "records"})
		if there["community_id"] == nil || here["community_id"] != there["community_id"] {
			t.Errorf("community_id differs: leeds %v, york %v", here["community_id"], there["community_id"])
		}
		if !strings.HasPrefix(fmt.Sprint(here["lan_src"]), "198.18.5.2:") {
			t.Errorf("Leeds's record: lan_src %v, want the device's LAN address", here["lan_src"])
		}
		if strings.HasPrefix(fmt.Sprint(there["src"]), "198.18.") {
			t.Errorf("York's record: src %v, want xray-2's overlay address", there["src"])
		}

		// Another address on the same LAN is no identity: refused.
		out, err = p.lan.exec(15*time.Second, "curl", "-sS", "--max-time", "10", "--interface", "198.18.5.3", url)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("curl from an unknown LAN address succeeded: %q", out)
		}
		p.leeds.waitEvent(t, map[string]any{"event": "flow.deny", "reason": "unknown-identity", "service": "records"})
	})

	// A reload that takes the rule away ends the live relayed flow within a
	// second, whichever end reloads: at home Leeds's relay resets both
	// ends, at York its own flow ends.
	for _, tc := range []struct {
		name              string
		atHome, atServing bool // which gateways reload
	}{
		{"at home", true, false},
		{"at the serving site", false, true},
		{"at both", true, true},
	} {
		t.Run("a reload "+tc.name+" revokes a live relayed flow", func(t *testing.T) {
			p := newSitePair(t, sitePairOpts{})
			var reloaded []*gatewayProc
			if tc.atHome {
				reloaded = append(reloaded, p.leeds)
			}
			if tc.atServing {
				reloaded = append(reloaded, p.york)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			curl := p.alice.cmd(ctx, "curl", "-sS", "-N", "--max-time", "60", p.records+"slow")
			stdout, _ := curl.StdoutPipe()
			var stderr strings.Builder
			curl.Stderr = &stderr
			if err := curl.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			if !sc.Scan() {
				t.Fatalf("no first line from /slow: %s", stderr.String())
			}
			ended := make(chan error, 1)
			go func() {
				for sc.Scan() {
				}
				ended <- curl.Wait()
			}()
			there := p.york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"})
			flow := map[string]any{"community_id": there["community_id"]}

			var wg sync.WaitGroup
			for _, g := range reloaded {
				wg.Go(func() { reload(t, g, p.policy(false)) })
			}
			wg.Wait()
			reloadedAt := time.Now()
			select {
			case err := <-ended:
				t.Logf("curl ended %v after the reloads: %v: %s", time.Since(reloadedAt).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
				if err == nil {
					t.Errorf("curl of /slow ended cleanly, want an error")
				}
			case <-time.After(time.Second):
				t.Fatalf("the client's connection outlived the reloads by 1 s")
			}
			// Both gateways end the flow. One that reloads logs flow.revoked,
			// unless (both reloading) the other's reset ended it first.
			var revoked int
			for _, g := range []*gatewayProc{p.leeds, p.york} {
				end := g.waitEvent(t, withEvent(flow, "flow.end"))
				n := len(g.find(t, withEvent(flow, "flow.revoked")))
				revoked += n
				t.Logf("%s: flow.end error=%q, flow.revoked %d", filepath.Base(filepath.Dir(g.audit)), end["error"], n)
				if n == 0 && len(reloaded) == 1 && reloaded[0] == g {
					t.Errorf("the reloading gateway logged no flow.revoked")
				}
			}
			if revoked == 0 {
				t.Errorf("no gateway logged flow.revoked")
			}
		})
	}

	// 300 flows open at once. They are opened in bursts of 50, each once
	// the previous one's requests arrived: a gateway refuses an identity's
	// flows beyond pending_per_identity (64) still being set up, and resets
	// SYNs beyond one source's share of the handshakes in flight
	// (pending_total/8, 128), so 300 SYNs in one burst would test those
	// caps, not the relay.
	t.Run("300 concurrent relayed flows", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		const burst = 50
		outs := make([]string, concurrentFlows/burst)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Go(func() {
				out, err := p.alice.exec(40*time.Second, "curl", "-sS", "--max-time", "30",
					"--parallel", "--parallel-immediate", "--parallel-max", fmt.Sprint(burst),
					fmt.Sprintf("%sbarrier?n=[1-%d]", p.records, burst))
				outs[i] = fmt.Sprintf("%s(curl: %v)\n", out, err)
			})
			for deadline := time.Now().Add(15 * time.Second); i < len(outs)-1 && p.web.arrived.Load() < int32((i+1)*burst); {
				if time.Now().After(deadline) {
					t.Errorf("only %d requests in after 15 s", p.web.arrived.Load())
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		wg.Wait()
		out := strings.Join(outs, "")
		if ok := strings.Count(out, "ok\n"); ok != concurrentFlows {
			for _, g := range []*gatewayProc{p.leeds, p.york} {
				reasons := map[string]int{}
				for _, ev := range g.find(t, map[string]any{"identity": "alice"}) {
					reasons[fmt.Sprint(ev["event"], " ", ev["reason"], ev["error"])]++
				}
				t.Logf("%s: %v", filepath.Base(filepath.Dir(g.audit)), reasons)
			}
			t.Fatalf("%d of %d flows answered ok; curl said:\n%s", ok, concurrentFlows, firstLines(out, 20))
		}
		if n := len(p.york.find(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"})); n != concurrentFlows {
			t.Errorf("York allowed %d relayed flows, want %d", n, concurrentFlows)
		}
	})

	// A closed flow no longer counts against the client's flow cap, as
	// for a local flow: connections opened and closed one at a time, for a
	// second, never meet flows_per_identity = 20.
	t.Run("closed relayed flows do not hold the flow cap", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{limits: "flows_per_identity = 20\n"})
		out, err := p.alice.helper(10*time.Second, "connrate", fmt.Sprintf("100.81.0.20:%d,1", p.web.port))
		denied := p.leeds.find(t, map[string]any{"event": "flow.deny", "reason": "flow-limit"})
		if err != nil || len(denied) > 0 {
			t.Fatalf("connections one at a time: %v: %s; Leeds refused %d as flow-limit", err, strings.TrimSpace(out), len(denied))
		}
		t.Logf("%s connections/s", strings.TrimSpace(out))
	})

	t.Run("a site that is down fails fast, and is back on the next probe", func(t *testing.T) {
		p := newSitePair(t, sitePairOpts{})
		before := strings.Count(p.leeds.output(), "site link down")
		p.york.stop(t)
		testwait.Until(t, 10*time.Second, "Leeds to notice York is down", func() bool {
			return strings.Count(p.leeds.output(), "site link down") > before
		})
		out := curlFailsFast(t, p.alice.netns, p.records)
		p.leeds.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "records", "reason": "site-down"})
		t.Logf("curl: %s", strings.TrimSpace(out))
		// Back: Leeds's next probe (every second while down) lets flows
		// through again.
		p.restartYork(t)
	})
}

// withEvent is want with the event field set.
func withEvent(want map[string]any, event string) map[string]any {
	m := map[string]any{"event": event}
	for k, v := range want {
		m[k] = v
	}
	return m
}

// firstLines is s's first n lines.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
