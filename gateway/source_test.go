package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/gateway/policysource/gittest"
	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
	"github.com/wardgate/wardgate/policy"
)

// sourceRig is one gateway following a repository, with alice connected.
type sourceRig struct {
	t     *testing.T
	repo  *gittest.Repo
	be    testBackends
	keys  [3]testKey // gateway, alice, bob
	sw    *memnet.Switch
	dir   string
	extra string // more [policy_source] keys, and tables after it
	tg    *testGateway
	alice *wgclient.Client
}

func newSourceRig(t *testing.T) *sourceRig {
	return &sourceRig{t: t, repo: gittest.New(t), be: startTestBackends(t),
		keys: [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}, sw: memnet.NewSwitch(), dir: t.TempDir()}
}

func (r *sourceRig) policy() string {
	return sprintfPolicy(r.keys[0], r.keys[1], r.keys[2], r.be)
}

// withoutAliceEHR is the policy with clinical's access to ehr removed.
func (r *sourceRig) withoutAliceEHR() string {
	return strings.Replace(r.policy(), `to = ["ehr", "dead", "echo"]`, `to = ["dead", "echo"]`, 1)
}

func (r *sourceRig) commit(text, msg string, signer *openpgp.Entity) string {
	return r.repo.Commit("policy.toml", []byte(text), msg, signer)
}

// start starts the gateway (again, with the same state_dir).
func (r *sourceRig) start() (*testGateway, error) {
	t := r.t
	t.Helper()
	os.WriteFile(filepath.Join(r.dir, "gw.key"), []byte(r.keys[0].privB64()+"\n"), 0o600)
	conf := fmt.Sprintf("site = \"leeds\"\nprivate_key_file = \"gw.key\"\nlisten = \"127.0.0.1:51820\"\n[limits]\ndrain = \"1s\"\n"+
		"[policy_source]\nrepo = %q\npoll = \"100ms\"\n%s", r.repo.URL(), r.extra)
	if err := os.WriteFile(filepath.Join(r.dir, "gateway.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(filepath.Join(r.dir, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGateway{key: r.keys[0], sw: r.sw, audit: &syncBuffer{}, dir: r.dir}
	tg.gw, err = Start(cfg, Options{Bind: r.sw.Bind(netip.MustParseAddr("127.0.0.1")), Audit: NewAuditLogger(tg.audit), Logger: slogToTest(t)})
	if err != nil {
		return nil, err
	}
	tg.port = tg.gw.Port()
	t.Cleanup(func() { tg.gw.Close() })
	r.tg = tg
	return tg, nil
}

func (r *sourceRig) mustStart() *testGateway {
	r.t.Helper()
	tg, err := r.start()
	if err != nil {
		r.t.Fatal(err)
	}
	return tg
}

func (r *sourceRig) connectAlice() {
	r.alice = r.tg.client(r.t, r.keys[1], "100.80.1.10")
}

func (r *sourceRig) aliceReachesEHR() error {
	rr := reloadRig{tg: r.tg, be: r.be}
	return rr.roundTrip(r.alice)
}

// metric is one sample of the gateway's metrics, -1 when absent.
func (r *sourceRig) metric(series string) float64 {
	rec := httptest.NewRecorder()
	r.tg.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return sampleValue(rec.Body.String(), series)
}

func (r *sourceRig) waitCommit(want string) {
	r.t.Helper()
	testwait.Until(r.t, 10*time.Second, "commit "+want, func() bool {
		return r.tg.gw.Status().PolicySource.Commit == want
	})
}

func TestSourceFollowsTheBranch(t *testing.T) {
	r := newSourceRig(t)
	first := r.commit(r.policy(), "leeds: first policy", nil)
	tg := r.mustStart()
	if ps := tg.gw.Status().PolicySource; ps == nil || ps.Commit != first || ps.Behind || ps.Offline {
		t.Fatalf("status after start: %+v", ps)
	}
	tg.audit.waitEvent(t, map[string]any{"event": "gateway.start", "commit": first})
	r.connectAlice()
	if err := r.aliceReachesEHR(); err != nil {
		t.Fatal(err)
	}
	// A live flow the new commit denies is revoked, as by a reload.
	conn, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	second := r.commit(r.withoutAliceEHR(), "clinical loses ehr", nil)
	ev := tg.audit.waitEvent(t, map[string]any{"event": "config.reload", "commit": second})
	if ev["previous_commit"] != first || ev["subject"] != "clinical loses ehr" || fmt.Sprint(ev["revoked"]) != "1" {
		t.Errorf("config.reload: %v", ev)
	}
	tg.audit.waitEvent(t, map[string]any{"event": "flow.revoked", "identity": "alice"})
	if err := r.aliceReachesEHR(); err == nil {
		t.Error("alice still reaches ehr after the commit that removed it")
	}
	if ps := tg.gw.Status().PolicySource; ps.Commit != second || ps.Head != second || ps.Behind || ps.LastFetch.IsZero() {
		t.Errorf("status: %+v", ps)
	}
}

func TestSourceRefusesABrokenCommitThenTakesTheNext(t *testing.T) {
	r := newSourceRig(t)
	good := r.commit(r.policy(), "good", nil)
	tg := r.mustStart()
	broken := r.commit(r.policy()+"\n[[rule]]\nname = \"broken\"\nfrom = [\"group:nobody\"]\nto = [\"ehr\"]\n", "typo", nil)
	ev := tg.audit.waitEvent(t, map[string]any{"event": "config.error", "commit": broken})
	at := "policy.toml@" + policysource.Short(broken) + ":"
	if msg := fmt.Sprint(ev["error"]); !strings.Contains(msg, at) || !strings.Contains(msg, "nobody") {
		t.Errorf("config.error %q does not name %s and the fault", msg, at)
	}
	ps := tg.gw.Status().PolicySource
	if ps.Commit != good || ps.Head != broken || !ps.Behind || ps.Refused != broken {
		t.Errorf("status after a broken commit: %+v", ps)
	}
	if r.metric("wardgate_policy_source_behind") != 1 || r.metric(`wardgate_policy_commit_info{commit="`+good+`"}`) != 1 {
		t.Errorf("metrics after a broken commit: behind %v, commit_info %v",
			r.metric("wardgate_policy_source_behind"), r.metric(`wardgate_policy_commit_info{commit="`+good+`"}`))
	}
	// A failing [[test]] is refused like a syntax error.
	failing := r.commit(r.withoutAliceEHR()+"\n[[test]]\nfrom = \"alice\"\nto = \"ehr\"\nexpect = \"allow\"\n", "test fails", nil)
	tg.audit.waitEvent(t, map[string]any{"event": "config.error", "commit": failing})
	fixed := r.commit(r.withoutAliceEHR(), "fixed", nil)
	r.waitCommit(fixed)
	if got := tg.gw.Status().PolicySource; got.Behind || got.Refused != failing {
		t.Errorf("status after the fix: %+v", got)
	}
	// Each refused commit was logged once, not at every poll.
	n := 0
	for _, e := range tg.audit.events(t) {
		if e["event"] == "config.error" && e["commit"] == broken {
			n++
		}
	}
	if n != 1 {
		t.Errorf("broken commit logged %d times, want 1", n)
	}
}

// A head refused because of this gateway.toml (a listener naming a
// service the commit removes) stays refused through a reload, since
// listeners change only on restart, and applies once the gateway restarts
// without that listener.
func TestSourceRetriesARefusedHeadAfterARestart(t *testing.T) {
	r := newSourceRig(t)
	r.extra = fmt.Sprintf("[[listener]]\nlisten = \"127.0.0.1:%d\"\nservice = \"payroll\"\n", freeTCPPort(t))
	first := r.commit(r.policy(), "good", nil)
	tg := r.mustStart()
	renamed := strings.ReplaceAll(r.policy(), `"payroll"`, `"payroll2"`)
	next := r.commit(renamed, "payroll becomes payroll2", nil)
	ev := tg.audit.waitEvent(t, map[string]any{"event": "config.error", "commit": next})
	if !strings.Contains(fmt.Sprint(ev["error"]), `unknown service "payroll"`) {
		t.Fatalf("config.error: %v", ev["error"])
	}
	// The listener goes from gateway.toml: a reload keeps the running one
	// (and the commit running), a restart takes the head.
	conf, _ := os.ReadFile(filepath.Join(r.dir, "gateway.toml"))
	os.WriteFile(filepath.Join(r.dir, "gateway.toml"), []byte(conf[:strings.Index(string(conf), "[[listener]]")]), 0o644)
	if _, err := tg.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tg.gw.Status().PolicySource.Commit; got != first {
		t.Fatalf("after the reload the gateway runs %s, want %s (its listener still runs)", got, first)
	}
	tg.gw.Close()
	r.extra = ""
	r.mustStart()
	r.waitCommit(next)
}

// A reload cannot switch the gateway from the repository to a local file.
func TestSourceReloadKeepsTheSource(t *testing.T) {
	r := newSourceRig(t)
	first := r.commit(r.policy(), "good", nil)
	tg := r.mustStart()
	os.WriteFile(filepath.Join(r.dir, "policy.toml"), []byte(r.withoutAliceEHR()), 0o644)
	os.WriteFile(filepath.Join(r.dir, "gateway.toml"), []byte("site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"gw.key\"\nlisten = \"127.0.0.1:51820\"\n"), 0o644)
	if _, err := tg.gw.Reload(); err == nil || !strings.Contains(err.Error(), "takes a restart") {
		t.Fatalf("reload to a local policy: %v", err)
	}
	if ps := tg.gw.Status().PolicySource; ps.Commit != first {
		t.Fatalf("status: %+v", ps)
	}
}

func TestSourceSignatures(t *testing.T) {
	alice, alicePub := gittest.NewKey(t, "alice")
	mallory, _ := gittest.NewKey(t, "mallory")
	r := newSourceRig(t)
	os.WriteFile(filepath.Join(r.dir, "signers.asc"), []byte(alicePub), 0o644)
	r.extra = "allowed_signers = \"signers.asc\"\n"
	signed := r.commit(r.policy(), "signed", alice)
	tg := r.mustStart()
	if ps := tg.gw.Status().PolicySource; ps.Commit != signed || !strings.Contains(ps.Signer, "alice") {
		t.Fatalf("status: %+v", ps)
	}
	for _, tc := range []struct {
		name   string
		signer *openpgp.Entity
		want   string
	}{
		{"unsigned", nil, "is not signed"},
		{"unknown key", mallory, "signature not verified"},
	} {
		h := r.commit(r.withoutAliceEHR(), tc.name, tc.signer)
		ev := tg.audit.waitEvent(t, map[string]any{"event": "config.error", "commit": h})
		if !strings.Contains(fmt.Sprint(ev["error"]), tc.want) {
			t.Errorf("%s: config.error %v, want %q", tc.name, ev["error"], tc.want)
		}
	}
	if got := tg.gw.Status().PolicySource.Commit; got != signed {
		t.Fatalf("running %s after refusals, want %s", got, signed)
	}
	next := r.commit(r.withoutAliceEHR(), "signed again", alice)
	ev := tg.audit.waitEvent(t, map[string]any{"event": "config.reload", "commit": next})
	if !strings.Contains(fmt.Sprint(ev["signer"]), "alice") {
		t.Errorf("config.reload does not name the signer: %v", ev)
	}
}

func TestSourceRestartsFromItsCache(t *testing.T) {
	r := newSourceRig(t)
	good := r.commit(r.policy(), "good", nil)
	r.mustStart().gw.Close()

	// The repository goes away: the restarted gateway runs the last good
	// commit and says so.
	hidden := r.repo.Dir + ".away"
	if err := os.Rename(r.repo.Dir, hidden); err != nil {
		t.Fatal(err)
	}
	tg := r.mustStart()
	ps := tg.gw.Status().PolicySource
	if ps.Commit != good || !ps.Offline || ps.FetchErr == "" {
		t.Fatalf("status offline: %+v", ps)
	}
	if r.metric("wardgate_policy_source_offline") != 1 || r.metric(`wardgate_policy_source_fetches_total{result="error"}`) < 1 {
		t.Errorf("metrics offline: offline %v", r.metric("wardgate_policy_source_offline"))
	}
	r.connectAlice()
	if err := r.aliceReachesEHR(); err != nil {
		t.Fatalf("the cached policy does not serve: %v", err)
	}
	// Back: it catches up.
	if err := os.Rename(hidden, r.repo.Dir); err != nil {
		t.Fatal(err)
	}
	next := r.commit(r.withoutAliceEHR(), "while away", nil)
	r.waitCommit(next)
	if ps := tg.gw.Status().PolicySource; ps.Offline || ps.FetchErr != "" {
		t.Errorf("status after catching up: %+v", ps)
	}
	if r.metric("wardgate_policy_source_offline") != 0 || r.metric("wardgate_policy_source_last_fetch_timestamp_seconds") <= 0 {
		t.Errorf("metrics after catching up: offline %v", r.metric("wardgate_policy_source_offline"))
	}
	tg.gw.Close()

	// A head that fails at restart: the cached commit runs, the head is
	// named as refused.
	broken := r.commit("not toml [", "broken", nil)
	tg = r.mustStart()
	if ps := tg.gw.Status().PolicySource; ps.Commit != next || ps.Refused != broken || !ps.Behind {
		t.Fatalf("status with a broken head at start: %+v", ps)
	}
	tg.audit.waitEvent(t, map[string]any{"event": "config.error", "commit": broken})
}

func TestSourceNeverStartsOpen(t *testing.T) {
	t.Run("repository unreachable and nothing cached", func(t *testing.T) {
		r := newSourceRig(t)
		r.commit(r.policy(), "good", nil)
		os.RemoveAll(r.repo.Dir)
		if _, err := r.start(); err == nil || !strings.Contains(err.Error(), "does not start open") {
			t.Fatalf("start: %v", err)
		}
	})
	t.Run("broken head and nothing cached", func(t *testing.T) {
		r := newSourceRig(t)
		r.commit("[[site]\n", "broken", nil)
		_, err := r.start()
		var le *policy.LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "does not start open") {
			t.Fatalf("start: %v", err)
		}
	})
}

// A commit rotating this site's key before the gateway has the new key:
// a restart runs the cached commit; with the new key, the head.
func TestSourceStartsOnTheCacheWhenTheHeadRotatesItsKey(t *testing.T) {
	r := newSourceRig(t)
	good := r.commit(r.policy(), "good", nil)
	r.mustStart().gw.Close()
	oldKey, newKey := r.keys[0], newTestKey(t)
	r.keys[0] = newKey
	rotated := r.commit(r.policy(), "leeds gets a new key", nil)
	r.keys[0] = oldKey
	tg := r.mustStart()
	if ps := tg.gw.Status().PolicySource; ps.Commit != good || ps.Refused != rotated || !strings.Contains(ps.RefusedBy, "private_key_file") {
		t.Fatalf("status with the old key: %+v", ps)
	}
	tg.gw.Close()
	r.keys[0] = newKey
	if ps := r.mustStart().gw.Status().PolicySource; ps.Commit != rotated || ps.Behind {
		t.Fatalf("status with the new key: %+v", ps)
	}
}

// Closing a following gateway ends its poller and whatever go-git started.
func TestSourceLeavesNoGoroutines(t *testing.T) {
	r := newSourceRig(t)
	r.commit(r.policy(), "good", nil)
	baseline := runtime.NumGoroutine()
	tg := r.mustStart()
	r.commit(r.withoutAliceEHR(), "next", nil)
	tg.gw.Close()
	testwait.Until(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})
}

// The console's overview shows the commit running and whether the
// gateway is up to date with its branch.
func TestSourceConsoleOverview(t *testing.T) {
	r := newSourceRig(t)
	r.extra = "[admin]\nweb = \"127.0.0.1:0\"\n"
	first := r.commit(r.policy(), "leeds: first policy", nil)
	tg := r.mustStart()
	resp, err := http.Get("http://" + tg.gw.WebAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`id="policy-source"`, first, "leeds: first policy", "up to date"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("overview lacks %s:\n%s", want, body)
		}
	}
}
