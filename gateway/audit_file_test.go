package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// opLog captures an operational log as text lines.
type opLog struct{ syncBuffer }

func (l *opLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *opLog) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

const failedLine = "AUDIT LOG WRITE FAILED"

// TestAuditWriteFailures writes to real descriptors that cannot take the
// line: every failure is counted and the operational log says so once.
func TestAuditWriteFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *os.File
		err  error
	}{
		{"full device", func(t *testing.T) *os.File {
			f, err := os.OpenFile("/dev/full", os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Skipf("no /dev/full: %v", err)
			}
			return f
		}, syscall.ENOSPC},
		{"closed file", func(t *testing.T) *os.File {
			f, err := os.Create(filepath.Join(t.TempDir(), "audit.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			return f
		}, os.ErrClosed},
		{"read-only descriptor", func(t *testing.T) *os.File {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}, syscall.EBADF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ops opLog
			s := &auditSink{path: "test", log: ops.logger(), w: tc.open(t)}
			audit := NewAuditLogger(s)
			for i := range 5 {
				audit.Info(EventFlowAllow, "n", i)
			}
			if got := s.failures.Load(); got != 5 {
				t.Errorf("failures = %d, want 5", got)
			}
			if _, err := s.Write([]byte("{}\n")); !errors.Is(err, tc.err) {
				t.Errorf("Write error = %v, want %v", err, tc.err)
			}
			lines := ops.lines(failedLine)
			if len(lines) != 1 {
				t.Fatalf("operational log has %d failure lines, want 1 (rate-limited):\n%s", len(lines), ops.b.String())
			}
			if !strings.Contains(lines[0], "failed=1 ") {
				t.Errorf("first report: %s", lines[0])
			}
		})
	}
}

// flakyWriter fails while err is set, writing half of the line first when
// torn is set.
type flakyWriter struct {
	bytes.Buffer
	err  error
	torn bool
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if w.err == nil {
		return w.Buffer.Write(p)
	}
	n := 0
	if w.torn {
		n, _ = w.Buffer.Write(p[:len(p)/2])
	}
	return n, w.err
}

// TestAuditFailureReports: one line per interval while writes fail, with
// the failures since the last line, and one when writing works again.
func TestAuditFailureReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ops opLog
		w := &flakyWriter{err: syscall.ENOSPC}
		s := &auditSink{path: "audit.jsonl", log: ops.logger(), w: w}
		audit := NewAuditLogger(s)
		for range 3 {
			audit.Info(EventFlowAllow)
		}
		time.Sleep(auditFailureReportEvery - time.Second)
		audit.Info(EventFlowAllow)
		if n := len(ops.lines(failedLine)); n != 1 {
			t.Fatalf("%d failure lines within the interval, want 1", n)
		}
		time.Sleep(time.Second)
		audit.Info(EventFlowAllow)
		lines := ops.lines(failedLine)
		if len(lines) != 2 || !strings.Contains(lines[1], "failed=4 ") || !strings.Contains(lines[1], "failed_total=5") {
			t.Fatalf("after the interval:\n%s", ops.b.String())
		}
		w.err = nil
		audit.Info(EventFlowAllow)
		audit.Info(EventFlowAllow)
		back := ops.lines("audit log writable again")
		if len(back) != 1 || !strings.Contains(back[0], "lost=5") {
			t.Fatalf("recovery lines:\n%s", ops.b.String())
		}
		if s.failures.Load() != 5 {
			t.Errorf("failures = %d, want 5", s.failures.Load())
		}
		// A new run of failures is reported at once.
		w.err = syscall.EIO
		audit.Info(EventFlowAllow)
		if n := len(ops.lines(failedLine)); n != 3 {
			t.Errorf("%d failure lines after a new failure, want 3", n)
		}
	})
}

// TestAuditTornLine: a write that stops mid-line leaves that line broken,
// not the next one.
func TestAuditTornLine(t *testing.T) {
	var ops opLog
	w := &flakyWriter{err: syscall.ENOSPC, torn: true}
	s := &auditSink{path: "audit.jsonl", log: ops.logger(), w: w}
	audit := NewAuditLogger(s)
	audit.Info(EventFlowAllow, "n", 1)
	w.err = nil
	audit.Info(EventFlowAllow, "n", 2)
	audit.Info(EventFlowAllow, "n", 3)
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	for i, line := range lines[1:] {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev["n"] != float64(i+2) {
			t.Errorf("line after the torn one: %q (%v)", line, err)
		}
	}
}

// readEvents parses a JSON-lines audit file.
func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: line is not JSON: %q", path, sc.Text())
		}
		out = append(out, ev)
	}
	return out
}

// TestAuditReopen renames the audit file as logrotate does: lines go on to
// the renamed file until Reopen, then to a new file at the path.
func TestAuditReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	var ops opLog
	s, err := openAuditSink(path, ops.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	audit := NewAuditLogger(s)
	audit.Info(EventFlowAllow, "n", "before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	audit.Info(EventFlowAllow, "n", "renamed")
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	audit.Info(EventFlowAllow, "n", "after")

	names := func(evs []map[string]any) string {
		var out []string
		for _, ev := range evs {
			out = append(out, fmt.Sprint(ev["n"]))
		}
		return strings.Join(out, ",")
	}
	if got := names(readEvents(t, path+".1")); got != "before,renamed" {
		t.Errorf("rotated file: %s", got)
	}
	if got := names(readEvents(t, path)); got != "after" {
		t.Errorf("new file: %s", got)
	}
}

// TestAuditReopenUnderLoad reopens while writers log: every line lands
// whole in exactly one of the two files.
func TestAuditReopenUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	var ops opLog
	s, err := openAuditSink(path, ops.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	audit := NewAuditLogger(s)
	const writers, each = 4, 500
	var wg sync.WaitGroup
	// Writer 0 waits at half-way for the reopen; the others race it.
	half, reopened := make(chan struct{}), make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if w == 0 && i == each/2 {
					close(half)
					<-reopened
				}
				audit.Info(EventFlowAllow, "w", w, "i", i, "pad", strings.Repeat("x", 200))
			}
		})
	}
	<-half
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	close(reopened)
	wg.Wait()
	old, cur := readEvents(t, path+".1"), readEvents(t, path)
	if len(cur) == 0 {
		t.Error("nothing reached the reopened file")
	}
	seen := map[string]bool{}
	for _, ev := range append(old, cur...) {
		seen[fmt.Sprint(ev["w"], "/", ev["i"])] = true
	}
	if len(old)+len(cur) != writers*each || len(seen) != writers*each {
		t.Errorf("%d + %d lines, %d distinct; want %d", len(old), len(cur), len(seen), writers*each)
	}
	if s.failures.Load() != 0 {
		t.Errorf("%d failures", s.failures.Load())
	}
}

// TestAuditGatewayFullDisk: a gateway whose audit log is on a full device
// keeps serving, and status and /metrics count the lost events.
func TestAuditGatewayFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	m := startMonitored(t, "[log]\naudit = \"/dev/full\"\n", nil)
	for range 2 {
		if _, err := m.gw.Reload(); err != nil { // each writes config.reload
			t.Fatal(err)
		}
	}
	// gateway.start and two config.reload lines were lost.
	if got := m.gw.Status().AuditWriteErrors; got != 3 {
		t.Errorf("status audit_write_errors = %d, want 3", got)
	}
	if v := sampleValue(m.scrape(t), "wardgate_audit_write_errors_total"); v != 3 {
		t.Errorf("wardgate_audit_write_errors_total = %v, want 3", v)
	}
}

// TestAuditGatewayReopenOnReload: logrotate renames the file and reloads;
// the reload's own event is the first line of the new file.
func TestAuditGatewayReopenOnReload(t *testing.T) {
	m := startMonitored(t, "[log]\naudit = \"audit.jsonl\"\n", nil)
	path := filepath.Join(m.dir, "audit.jsonl")
	if _, err := m.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	old, cur := readEvents(t, path+".1"), readEvents(t, path)
	if len(old) != 2 || old[0]["event"] != EventGatewayStart || old[1]["event"] != EventConfigReload {
		t.Errorf("rotated file: %v", old)
	}
	if len(cur) != 1 || cur[0]["event"] != EventConfigReload {
		t.Errorf("new file: %v", cur)
	}
	if n := m.gw.Status().AuditWriteErrors; n != 0 {
		t.Errorf("%d audit write errors", n)
	}
}
