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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/gateway/policysource/gittest"
	"github.com/wardgate/wardgate/internal/testwait"
)

// fleetPoll is the gateways' policy_source poll in this test.
const fleetPoll = time.Second

// policyRepo is the fleet's repository: commits are made with go-git in a
// working repository and pushed with git to a bare one, which `git daemon`
// serves on loopback.
type policyRepo struct {
	work   *gittest.Repo
	bare   string
	url    string
	port   int
	daemon *exec.Cmd
	signer *openpgp.Entity
}

func newPolicyRepo(t *testing.T) (*policyRepo, string) {
	t.Helper()
	signer, pub := gittest.NewKey(t, "change-board")
	r := &policyRepo{work: gittest.New(t), signer: signer}
	base := t.TempDir()
	r.bare = filepath.Join(base, "segmentation.git")
	run(t, "git", "init", "-q", "--bare", "-b", "main", r.bare)
	r.port = freeTCPPort(t)
	r.url = fmt.Sprintf("git://127.0.0.1:%d/segmentation.git", r.port)
	r.startDaemon(t, base)
	return r, pub
}

// startDaemon runs git daemon for the bare repository and waits until it
// accepts connections; the test's end kills it by its PID.
func (r *policyRepo) startDaemon(t *testing.T, base string) {
	t.Helper()
	r.daemon = exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--listen=127.0.0.1", fmt.Sprintf("--port=%d", r.port), "--base-path="+base, base)
	// Its own process group: `git daemon` runs git-daemon as a child (which
	// forks upload-pack children), and all of them must end with it.
	r.daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	testwait.Until(t, 10*time.Second, "git daemon to listen", func() bool {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill ends the git server and its children, by its process group.
func (r *policyRepo) kill() {
	if r.daemon.ProcessState == nil {
		syscall.Kill(-r.daemon.Process.Pid, syscall.SIGKILL)
		r.daemon.Wait()
	}
}

// commit commits text as policy.toml (signed by the change board unless
// unsigned) and pushes it; it returns the commit.
func (r *policyRepo) commit(t *testing.T, text, msg string, signed bool) string {
	t.Helper()
	var by *openpgp.Entity
	if signed {
		by = r.signer
	}
	h := r.work.Commit("policy.toml", []byte(text), msg, by)
	run(t, "git", "-C", r.work.Dir, "push", "-q", r.bare, "main")
	return h
}

// writeFleetSite is a gateway.toml that follows the repository, with only
// signed commits applying.
func writeFleetSite(t *testing.T, name string, keys keypair, port int, repo *policyRepo, signers string) string {
	t.Helper()
	dir := t.TempDir()
	for file, data := range map[string]string{name + ".key": keys.priv + "\n", "signers.asc": signers} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`site = %q
private_key_file = %q
listen = "127.0.0.1:%d"

[policy_source]
repo = %q
branch = "main"
path = "policy.toml"
poll = %q
allowed_signers = "signers.asc"

[log]
audit = "audit.log"
level = "debug"

[limits]
drain = "1s"

[admin]
socket = "admin.sock"
`, name, name+".key", port, repo.url, fleetPoll.String())
	if err := os.WriteFile(filepath.Join(dir, "gateway.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fleetStatus is `wardgate status --json` of g.
func fleetStatus(t *testing.T, g *gatewayProc) gateway.SourceStatus {
	t.Helper()
	code, out, stderr := wardgateCLI(t, "status", "-c", filepath.Join(g.dir, "gateway.toml"), "--json")
	var st gateway.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.PolicySource == nil {
		t.Fatalf("status: exit %d, %v: %s%s", code, err, out, stderr)
	}
	return *st.PolicySource
}

// TestFleet: two `wardgate run` processes follow one repository served
// by git daemon. A commit moving a service between them is applied by
// both within the poll, and alice's next flow follows the service; a
// broken commit and an unsigned one are refused by both, named in their
// audit logs; with the git server gone, running flows go on and a
// gateway restarted meanwhile runs the last good commit.
func TestFleet(t *testing.T) {
	requireInterop(t, "curl", "git")
	repo, signers := newPolicyRepo(t)
	p := &sitePair{web: startSiteWeb(t)}
	p.leedsKeys, p.yorkKeys, p.aliceKeys = newKeypair(t), newKeypair(t), newKeypair(t)
	p.leedsPort, p.yorkPort = freeUDPPort(t), freeUDPPort(t)
	atYork := p.policy(true)
	atLeeds := strings.Replace(atYork, "name = \"records\"\nsite = \"york\"", "name = \"records\"\nsite = \"leeds\"", 1)
	if atLeeds == atYork {
		t.Fatal("the policy has no records service at york to move")
	}
	first := repo.commit(t, atYork, "records at york", true)

	p.leeds = startGateway(t, writeFleetSite(t, "leeds", p.leedsKeys, p.leedsPort, repo, signers), p.leedsPort)
	p.york = startGateway(t, writeFleetSite(t, "york", p.yorkKeys, p.yorkPort, repo, signers), p.yorkPort)
	both := []*gatewayProc{p.leeds, p.york}
	for _, g := range both {
		g.waitEvent(t, map[string]any{"event": "gateway.start", "commit": first})
		testwait.Until(t, 10*time.Second, "the site link up", func() bool { return strings.Contains(g.output(), "site link up") })
	}
	p.alice = newClient(t, "alice", "100.80.1.10", p.aliceKeys, p.leedsKeys.pub, p.leedsPort)
	p.records = fmt.Sprintf("http://100.81.0.20:%d/", p.web.port)
	if out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records); err != nil || out != "hello from york\n" {
		t.Fatalf("records at york: %q %v", out, err)
	}
	p.york.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"})

	// Records moves to Leeds: one commit, both gateways.
	moved := repo.commit(t, atLeeds, "records moves to leeds", true)
	pushed := time.Now()
	for _, g := range both {
		ev := g.waitEvent(t, map[string]any{"event": "config.reload", "commit": moved})
		if ev["previous_commit"] != first || !strings.Contains(fmt.Sprint(ev["signer"]), "change-board") {
			t.Errorf("config.reload: %v", ev)
		}
	}
	took := time.Since(pushed)
	t.Logf("both gateways applied the move %v after the push (poll %v)", took.Round(time.Millisecond), fleetPoll)
	if took > fleetPoll+2*time.Second {
		t.Errorf("applied %v after the push, want within the poll of %v (and 2 s of slack)", took, fleetPoll)
	}
	relayed := len(p.york.find(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"}))
	if out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records); err != nil || out != "hello from york\n" {
		t.Fatalf("records after the move: %q %v", out, err)
	}
	ev := p.leeds.waitEvent(t, map[string]any{"event": "flow.allow", "identity": "alice", "service": "records"})
	if got := len(p.york.find(t, map[string]any{"event": "flow.allow", "identity": "alice", "from_site": "leeds"})); got != relayed {
		t.Errorf("york still serves records after the move (%d relayed flows, was %d); leeds: %v", got, relayed, ev)
	}
	for _, g := range both {
		if l := fleetStatusLinks(t, g); l != moved {
			t.Errorf("%s: the other site reports commit %q, want %s", g.dir, l, moved)
		}
	}

	// A broken commit, then an unsigned one: both refused by both.
	broken := repo.commit(t, atYork+"\n[[rule]]\nname = \"typo\"\nfrom = [\"group:clinicl\"]\nto = [\"records\"]\n", "typo", true)
	for _, g := range both {
		ev := g.waitEvent(t, map[string]any{"event": "config.error", "commit": broken})
		if msg := fmt.Sprint(ev["error"]); !strings.Contains(msg, "policy.toml@"+policysource.Short(broken)+":") || !strings.Contains(msg, "clinicl") {
			t.Errorf("config.error for the broken commit: %s", msg)
		}
	}
	unsigned := repo.commit(t, atYork, "records back to york, unsigned", false)
	for _, g := range both {
		ev := g.waitEvent(t, map[string]any{"event": "config.error", "commit": unsigned})
		if !strings.Contains(fmt.Sprint(ev["error"]), "is not signed") {
			t.Errorf("config.error for the unsigned commit: %v", ev["error"])
		}
		if st := fleetStatus(t, g); st.Commit != moved || !st.Behind || st.Head != unsigned {
			t.Errorf("status after the refusals: %+v", st)
		}
	}

	// The git server goes away during a long flow.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	curl := p.alice.cmd(ctx, "curl", "-sS", "-N", "--max-time", "6", p.records+"slow")
	stdout, _ := curl.StdoutPipe()
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan int, 1)
	go func() {
		n := 0
		for sc := bufio.NewScanner(stdout); sc.Scan(); n++ {
		}
		curl.Wait()
		lines <- n
	}()
	repo.kill()
	for _, g := range both {
		testwait.Until(t, 3*fleetPoll+5*time.Second, "the fetch failure logged", func() bool {
			return strings.Contains(g.output(), "policy source unreachable")
		})
	}
	p.york.stop(t)
	p.york = startGateway(t, p.york.dir, p.york.port)
	if !strings.Contains(p.york.output(), "POLICY SOURCE UNREACHABLE") {
		t.Errorf("york restarted offline without saying so:\n%s", p.york.output())
	}
	if st := fleetStatus(t, p.york); st.Commit != moved || !st.Offline {
		t.Errorf("york restarted offline: %+v", st)
	}
	if n := <-lines; n < 40 {
		t.Errorf("the long flow got %d lines in 6 s while the git server died, want about 60", n)
	}
	if out, err := p.alice.exec(10*time.Second, "curl", "-sS", "--max-time", "5", p.records); err != nil || out != "hello from york\n" {
		t.Errorf("a new flow with the git server gone: %q %v", out, err)
	}
}

// fleetStatusLinks is the commit g's site link reports for the other
// gateway, once it reported one.
func fleetStatusLinks(t *testing.T, g *gatewayProc) string {
	t.Helper()
	var commit string
	testwait.Until(t, 10*time.Second, "a site link reporting a commit", func() bool {
		code, out, _ := wardgateCLI(t, "status", "-c", filepath.Join(g.dir, "gateway.toml"), "--json")
		var st gateway.Status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.SiteLinks) == 0 || st.PolicySource == nil {
			return false
		}
		commit = st.SiteLinks[0].PolicyCommit
		return commit == st.PolicySource.Commit
	})
	return commit
}
