package gateway

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditLogrotateConfig runs logrotate with the shipped
// configs/logrotate/wardgate, its paths and user moved to a temp dir and
// its reload to this test's gateway: the rotated file keeps what was
// written before, the reopened one gets the reload's event.
func TestAuditLogrotateConfig(t *testing.T) {
	logrotate, err := exec.LookPath("logrotate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("logrotate not found (scripts/install-deps.sh installs it)")
		}
		t.Skip("logrotate not found")
	}
	shipped, err := os.ReadFile("../configs/logrotate/wardgate")
	if err != nil {
		t.Fatal(err)
	}
	const reload = "if systemctl is-active --quiet wardgate.service; then systemctl reload wardgate.service; fi"
	const create = "create 0640 wardgate wardgate"
	if !strings.Contains(string(shipped), reload) || !strings.Contains(string(shipped), create) {
		t.Fatalf("configs/logrotate/wardgate no longer has the lines this test replaces:\n%s", shipped)
	}
	m := startMonitored(t, "[log]\naudit = \"audit.jsonl\"\n", nil)
	if _, err := m.gw.Reload(); err != nil { // a first line, to rotate
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(m.dir, "postrotate-ran")
	conf := strings.NewReplacer(
		"/var/log/wardgate", m.dir,
		create, "create 0640 "+u.Username+" "+g.Name,
		reload, "touch "+marker,
	).Replace(string(shipped))
	confPath := filepath.Join(t.TempDir(), "wardgate")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(logrotate, "-f", "-s", filepath.Join(t.TempDir(), "state"), confPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("postrotate did not run")
	}
	if _, err := m.gw.Reload(); err != nil { // what postrotate does for real
		t.Fatal(err)
	}
	rotated, _ := filepath.Glob(filepath.Join(m.dir, "audit.jsonl-*"))
	if len(rotated) != 1 {
		t.Fatalf("rotated files: %v", rotated)
	}
	old, cur := readEvents(t, rotated[0]), readEvents(t, filepath.Join(m.dir, "audit.jsonl"))
	if len(old) != 2 || len(cur) != 1 || cur[0]["event"] != EventConfigReload { // old: gateway.start, config.reload
		t.Errorf("rotated file %v, new file %v", old, cur)
	}
}
