package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway"
)

func regexpLine(text, re string) bool {
	return regexp.MustCompile(`(?m)^\s*` + re + `\s*$`).MatchString(text)
}

// fakeGateway serves canned admin API answers on a unix socket.
type fakeGateway struct {
	status   gateway.Status
	services []gateway.ServiceInfo
	flows    []gateway.FlowInfo
	reloadOK bool
}

func serveFake(t *testing.T, f *fakeGateway) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wgc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	send := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := f.status
		st.Services = f.services
		send(w, 200, st)
	})
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) { send(w, 200, f.flows) })
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if f.reloadOK {
			send(w, 200, gateway.ReloadResult{OK: true, ReloadChanges: &gateway.ReloadChanges{PolicyHash: "feedfacefeedface", PreviousHash: "0123456789abcdef", Enforce: "audit", PreviousEnforce: "enforce", PeersAdded: []string{"carol"}, Revoked: 2}})
			return
		}
		send(w, 422, gateway.ReloadResult{Error: "bad", Problems: []string{`policy.toml:41:1: rule "x": unknown group "radiolgy"`}})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func sampleStatus(now time.Time) gateway.Status {
	return gateway.Status{
		Site: "leeds", Address: "100.80.0.1", Port: 51820, Enforce: "enforce", Enforcing: true,
		Policy: "/etc/wardgate/policy.toml", PolicyHash: "0123456789abcdef", LoadedAt: now.Add(-5 * time.Minute), ActiveFlows: 2,
		Peers: []gateway.PeerStatus{
			{Name: "dr-khan-laptop", Kind: "identity", Address: "100.80.1.10", Endpoint: "192.0.2.7:41000", LastHandshake: now.Add(-12 * time.Second), RxBytes: 1536, TxBytes: 3 << 20},
			{Name: "ward-12-desktop", Kind: "identity", Address: "100.80.1.20"},
			{Name: "york", Kind: "site", Address: "100.80.0.2", Endpoint: "127.0.0.1:51821", LastHandshake: now.Add(-3 * time.Minute)},
		},
		SiteLinks: []gateway.LinkStatus{{Site: "york", Address: "100.80.0.2", Healthy: true, PolicyHash: "fedcba9876543210", SameHash: false}},
	}
}

func TestStatusTable(t *testing.T) {
	now := time.Now()
	f := &fakeGateway{status: sampleStatus(now)}
	sock := serveFake(t, f)
	code, out, errOut := runCLI("status", "--socket", sock)
	if code != 0 {
		t.Fatalf("status: %d %s", code, errOut)
	}
	for _, re := range []string{
		`site:\s+leeds \(overlay 100\.80\.0\.1, WireGuard port 51820\)`,
		`policy hash:\s+0123456789abcdef, loaded .* \(5m ago\)`,
		`enforce:\s+enforce`,
		`active flows:\s+2`,
		`dr-khan-laptop\s+identity\s+100\.80\.1\.10\s+192\.0\.2\.7:41000\s+1[23]s ago\s+1\.5 KiB\s+3\.0 MiB`,
		`ward-12-desktop\s+identity\s+100\.80\.1\.20\s+-\s+never\s+0 B\s+0 B`,
		`york\s+site\s+100\.80\.0\.2\s+127\.0\.0\.1:51821\s+3m ago\s+0 B\s+0 B`,
		`york\s+100\.80\.0\.2\s+yes\s+fedcba9876543210\s+DIFFERENT\s+never`,
	} {
		if !regexpLine(out, re) {
			t.Errorf("status output lacks a line matching %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "AUDIT") {
		t.Error("enforcing gateway shown as audit")
	}
	if strings.Contains(out, "services") {
		t.Error("a services table from a gateway that sent none")
	}
	f.services = []gateway.ServiceInfo{{Name: "pacs", Site: "leeds", VIP: "100.81.0.10", Ports: []string{"8443/tcp"}, DNS: []string{"pacs.nhs.internal"}}}
	if _, out, _ = runCLI("status", "--socket", sock); !regexpLine(out, `pacs\s+leeds\s+100\.81\.0\.10\s+8443/tcp\s+pacs\.nhs\.internal`) {
		t.Errorf("status lacks the services table:\n%s", out)
	}

	f.status.Enforce, f.status.Enforcing = "audit", false
	_, out, _ = runCLI("status", "--socket", sock)
	if strings.Count(out, "!!! AUDIT MODE: NOT ENFORCING POLICY") != 2 || !strings.HasPrefix(out, "!!!") {
		t.Errorf("audit mode is not loud:\n%s", out)
	}

	code, out, _ = runCLI("status", "--socket", sock, "--json")
	var st gateway.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Site != "leeds" || len(st.Peers) != 3 || len(st.Services) != 1 {
		t.Fatalf("status --json: %d %q", code, out)
	}
}

func TestFlowsAndReload(t *testing.T) {
	now := time.Now()
	f := &fakeGateway{flows: []gateway.FlowInfo{{ID: "leeds-1", Identity: "dr-khan-laptop", Site: "leeds", Service: "pacs",
		Src: "100.80.1.10:50000", Dst: "100.81.0.10:8443", Proto: "tcp", Port: 8443, Rule: "radiology-reads-pacs",
		Start: now.Add(-30 * time.Second), BytesIn: 100, BytesOut: 2048}}}
	sock := serveFake(t, f)
	code, out, _ := runCLI("flows", "--socket", sock)
	if code != 0 || !regexpLine(out, `leeds-1\s+dr-khan-laptop\s+leeds\s+pacs\s+8443/tcp\s+100\.80\.1\.10:50000\s+100\.81\.0\.10:8443\s+radiology-reads-pacs\s+3[01]s ago\s+100 B\s+2\.0 KiB`) {
		t.Fatalf("flows: %d\n%s", code, out)
	}
	code, out, _ = runCLI("flows", "--socket", sock, "--json")
	var fl []gateway.FlowInfo
	if code != 0 || json.Unmarshal([]byte(out), &fl) != nil || len(fl) != 1 {
		t.Fatalf("flows --json: %d %q", code, out)
	}
	f.flows = nil
	if _, out, _ = runCLI("flows", "--socket", sock); !strings.Contains(out, "no live flows") {
		t.Fatalf("no flows: %q", out)
	}

	code, _, errOut := runCLI("reload", "--socket", sock)
	if code != 1 || !strings.Contains(errOut, `error: policy.toml:41:1: rule "x": unknown group "radiolgy"`) {
		t.Fatalf("refused reload: %d %s", code, errOut)
	}
	f.reloadOK = true
	code, out, _ = runCLI("reload", "--socket", sock)
	if code != 0 || !strings.Contains(out, "feedfacefeedface") {
		t.Fatalf("reload: %d %s", code, out)
	}
}

func TestAdminSocketFromConfig(t *testing.T) {
	f := &fakeGateway{status: sampleStatus(time.Now())}
	sock := serveFake(t, f)
	dir := filepath.Dir(sock)
	// Relative to the file; other keys are not checked (a broken
	// gateway.toml must not stop `wardgate reload` from reporting it).
	cfg := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfg, []byte("site = \"leeds\"\nbogus_key = 1\n[admin]\nsocket = \"admin.sock\"\n"), 0o644)
	if code, out, errOut := runCLI("status", "-c", cfg); code != 0 || !strings.Contains(out, "leeds") {
		t.Fatalf("status -c: %d %s %s", code, out, errOut)
	}
	os.WriteFile(cfg, []byte("site = \"leeds\"\n"), 0o644)
	if code, _, errOut := runCLI("status", "-c", cfg); code != 1 || !strings.Contains(errOut, "no [admin] socket") {
		t.Fatalf("status -c without [admin] socket: %d %s", code, errOut)
	}
	// A policy.toml is not a gateway that lacks a socket.
	for _, cmd := range [][]string{{"status"}, {"quarantine", "list"}, {"quarantine", "alice", "--reason", "x"}} {
		code, _, errOut := runCLI(append(cmd, "-c", examplePolicy)...)
		if code != 1 || !strings.Contains(errOut, examplePolicy+" is a policy.toml: give the gateway's gateway.toml") {
			t.Errorf("%v -c policy.toml: %d %s", cmd, code, errOut)
		}
	}
}

func TestAdminUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody.sock")
	for _, cmd := range []string{"status", "flows", "reload"} {
		code, out, errOut := runCLI(cmd, "--socket", sock)
		if code != 1 || out != "" || !strings.Contains(errOut, "cannot reach the gateway's admin socket "+sock) {
			t.Errorf("%s with no gateway: %d %q %q", cmd, code, out, errOut)
		}
		if strings.Contains(errOut, "http://") {
			t.Errorf("%s: message names a URL: %s", cmd, errOut)
		}
	}
	if code, _, _ := runCLI("status", "--socket", sock, "extra"); code != 2 {
		t.Error("extra argument accepted")
	}
}

func TestHumanFormats(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		got, want string
	}{
		{humanBytes(0), "0 B"}, {humanBytes(1023), "1023 B"}, {humanBytes(1536), "1.5 KiB"},
		{humanBytes(5 << 30), "5.0 GiB"}, {humanBytes(3 << 40), "3.0 TiB"},
		{ago(now, time.Time{}), "never"}, {ago(now, now.Add(-12*time.Second)), "12s ago"},
		{ago(now, now.Add(-5*time.Minute)), "5m ago"}, {ago(now, now.Add(-(2*time.Hour + 5*time.Minute))), "2h05m ago"},
		{ago(now, now.Add(-72*time.Hour)), "3d ago"}, {ago(now, now.Add(time.Second)), "just now"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
