package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/policy"
)

// fakeAdmin is an adminBackend with canned answers.
type fakeAdmin struct {
	status    Status
	flows     []FlowInfo
	reloadErr error
	reloads   atomic.Int32
}

func (f *fakeAdmin) Status() Status    { return f.status }
func (f *fakeAdmin) Flows() []FlowInfo { return f.flows }
func (f *fakeAdmin) Reload() (ReloadChanges, error) {
	f.reloads.Add(1)
	if f.reloadErr != nil {
		return ReloadChanges{}, f.reloadErr
	}
	f.status.PolicyHash = "new0123456789abc"
	return ReloadChanges{PolicyHash: f.status.PolicyHash, Enforce: "audit", PreviousEnforce: "enforce", PeersAdded: []string{"carol"}}, nil
}

func do(t *testing.T, h http.Handler, method, path string, into any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	if into != nil {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: content type %q", method, path, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, rec.Body, err)
		}
	}
	return rec.Code
}

func TestAdminHandler(t *testing.T) {
	hs := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f := &fakeAdmin{
		status: Status{
			Site: "leeds", Address: "100.80.0.1", Port: 51820, Enforce: "audit", Policy: "policy.toml",
			PolicyHash: "old0123456789abc", ActiveFlows: 1,
			Peers: []PeerStatus{{Name: "desk", Kind: "identity", Address: "100.80.1.10", LastHandshake: hs, RxBytes: 10, TxBytes: 20}},
		},
		flows: []FlowInfo{{ID: "leeds-7", Identity: "desk", Service: "ehr", Proto: "tcp", Port: 443}},
	}
	h := newAdminHandler(f)

	var st Status
	if code := do(t, h, "GET", "/v1/status", &st); code != 200 || !reflect.DeepEqual(st, f.status) {
		t.Fatalf("status: %d %+v", code, st)
	}
	var fl []FlowInfo
	if code := do(t, h, "GET", "/v1/flows", &fl); code != 200 || !reflect.DeepEqual(fl, f.flows) {
		t.Fatalf("flows: %d %+v", code, fl)
	}
	var ps []PeerStatus
	if code := do(t, h, "GET", "/v1/peers", &ps); code != 200 || !reflect.DeepEqual(ps, f.status.Peers) {
		t.Fatalf("peers: %d %+v", code, ps)
	}

	var rr ReloadResult
	if code := do(t, h, "POST", "/v1/reload", &rr); code != 200 || !rr.OK || rr.ReloadChanges == nil || rr.PolicyHash != "new0123456789abc" || rr.Enforce != "audit" {
		t.Fatalf("reload: %d %+v", code, rr)
	}

	f.reloadErr = &policy.LoadError{Problems: []policy.Problem{
		{File: "policy.toml", Line: 41, Col: 1, Msg: `rule "x": unknown group "radiolgy"`},
		{File: "policy.toml", Line: 50, Col: 3, Msg: "unknown key \"frm\""},
	}}
	rr = ReloadResult{}
	if code := do(t, h, "POST", "/v1/reload", &rr); code != 422 || rr.OK {
		t.Fatalf("bad reload: %d %+v", code, rr)
	}
	want := []string{`policy.toml:41:1: rule "x": unknown group "radiolgy"`, `policy.toml:50:3: unknown key "frm"`}
	if !reflect.DeepEqual(rr.Problems, want) || !strings.Contains(rr.Error, "radiolgy") {
		t.Fatalf("bad reload body %+v", rr)
	}
	f.reloadErr = errors.New("policy tests fail")
	rr = ReloadResult{}
	if code := do(t, h, "POST", "/v1/reload", &rr); code != 422 || rr.Error != "policy tests fail" || rr.Problems != nil {
		t.Fatalf("reload with a plain error: %d %+v", code, rr)
	}

	// Wrong methods and paths; a GET never reloads.
	n := f.reloads.Load()
	for _, c := range []struct{ method, path string }{{"GET", "/v1/reload"}, {"POST", "/v1/status"}, {"GET", "/v2/status"}} {
		if code := do(t, h, c.method, c.path, nil); code != 405 && code != 404 {
			t.Errorf("%s %s: %d", c.method, c.path, code)
		}
	}
	if f.reloads.Load() != n {
		t.Fatal("a request that is not POST /v1/reload reloaded")
	}

	// No flows is [], not null.
	f.flows = nil
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/flows", nil))
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("no flows: %q", rec.Body)
	}
}

// shortTempDir is a temp dir with a short path: unix socket paths are
// limited to about 100 bytes.
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "wga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestAdminSocketLifecycle(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "run", "admin.sock")
	g := &Gateway{cfg: &Config{Admin: AdminConfig{Socket: sock}, file: filepath.Join(dir, "gateway.toml")}, log: slogToTest(t)}
	baseline := runtime.NumGoroutine()
	if err := g.startAdmin(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(sock)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket: %v %v", st.Mode(), err)
	}
	if dst, _ := os.Stat(filepath.Dir(sock)); dst.Mode().Perm() != 0o750 {
		t.Fatalf("socket dir mode %v, want 0750", dst.Mode().Perm())
	}
	// It answers HTTP (a path that needs no gateway state).
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Get("http://wardgate/nothing")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /nothing: %d", resp.StatusCode)
	}
	// A second gateway on the same socket is refused while the first runs.
	g2 := &Gateway{cfg: g.cfg, log: slogToTest(t)}
	if err := g2.startAdmin(); err == nil || !strings.Contains(err.Error(), "another gateway") {
		t.Fatalf("second startAdmin: %v", err)
	}
	g.stopAdmin()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after stopAdmin: %v", err)
	}
	g.stopAdmin() // twice is fine
	testwait.Goroutines(t, 2*time.Second, baseline)
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestAdminStaleSocket(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "admin.sock")
	// A socket file nobody listens on, as a crashed gateway leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	g := &Gateway{cfg: &Config{Admin: AdminConfig{Socket: "admin.sock"}, file: filepath.Join(dir, "gateway.toml")}, log: slogToTest(t)}
	if err := g.startAdmin(); err != nil {
		t.Fatalf("stale socket not replaced (relative path): %v", err)
	}
	g.stopAdmin()

	// A regular file is not ours to delete.
	os.WriteFile(sock, []byte("keep"), 0o644)
	if err := g.startAdmin(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("startAdmin over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "keep" {
		t.Fatal("regular file replaced")
	}
}

func TestAdminSocketTooLong(t *testing.T) {
	long := filepath.Join(shortTempDir(t), strings.Repeat("d", 100), "admin.sock")
	g := &Gateway{cfg: &Config{Admin: AdminConfig{Socket: long}}, log: slogToTest(t)}
	if err := g.startAdmin(); err == nil || !strings.Contains(err.Error(), "at most 107 bytes") {
		t.Fatalf("startAdmin with a %d-byte path: %v", len(long), err)
	}
}

func TestAdminDisabled(t *testing.T) {
	g := &Gateway{cfg: &Config{}, log: slogToTest(t)}
	if err := g.startAdmin(); err != nil {
		t.Fatal(err)
	}
	g.stopAdmin()
}
