package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// auditFailureReportEvery bounds the operational log to one line per
// interval while audit writes keep failing (a full disk fails every one).
const auditFailureReportEvery = time.Minute

// auditSink is where the audit log's lines go: a file that Reopen can
// replace after log rotation, or stdout. It never drops a failure
// silently: every failed write is counted (wardgate_audit_write_errors_total,
// `wardgate status`) and reported on the operational log, at most once per
// auditFailureReportEvery, and once more when writes succeed again.
//
// The audit log's handler hands it one whole line per Write, so holding mu
// across the write is what keeps Reopen from losing or splitting a line.
type auditSink struct {
	path string       // "" for stdout, which cannot be reopened
	log  *slog.Logger // operational log

	failures atomic.Uint64 // failed writes since start

	mu sync.Mutex
	w  io.Writer // *os.File or os.Stdout
	// torn is set when a write stopped mid-line: the next line starts
	// with a newline, so that one broken line does not spoil the next.
	torn bool
	// failing counts the failures of the current run of them, and
	// unreported those since the last line on the operational log.
	failing, unreported uint64
	nextReport          time.Time
	closed              bool
}

// openAuditSink opens path for appending, or uses stdout when path is "".
func openAuditSink(path string, log *slog.Logger) (*auditSink, error) {
	s := &auditSink{path: path, log: log, w: os.Stdout}
	if path == "" {
		return s, nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	s.w = f
	return s, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return f, nil
}

// Write writes one line. A failure is counted and reported here, because
// slog drops a handler's error; it is still returned.
func (s *auditSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.torn {
		if _, err := s.w.Write([]byte{'\n'}); err != nil {
			s.failedLocked(err)
			return 0, err
		}
		s.torn = false
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.torn = n > 0
		s.failedLocked(err)
		return n, err
	}
	if s.failing > 0 {
		s.log.Warn("audit log writable again", "path", s.name(), "lost", s.failing)
		s.failing, s.unreported, s.nextReport = 0, 0, time.Time{}
	}
	return n, nil
}

func (s *auditSink) failedLocked(err error) {
	s.failures.Add(1)
	s.failing++
	s.unreported++
	now := time.Now()
	if now.Before(s.nextReport) {
		return
	}
	s.log.Error("AUDIT LOG WRITE FAILED: audit events are being lost", "path", s.name(), "err", err,
		"failed", s.unreported, "failed_total", s.failures.Load())
	s.unreported, s.nextReport = 0, now.Add(auditFailureReportEvery)
}

// Reopen opens the path again and switches to it, for log rotation: the
// old file (renamed by logrotate) gets every line written before, the new
// one every line after. When the path cannot be opened the old file is
// kept. Stdout is left alone.
func (s *auditSink) Reopen() error {
	if s.path == "" {
		return nil
	}
	f, err := openAuditFile(s.path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed { // the gateway stopped meanwhile
		s.mu.Unlock()
		return f.Close()
	}
	old := s.w
	s.w, s.torn = f, false
	s.mu.Unlock()
	return old.(io.Closer).Close()
}

// Close closes the file; stdout stays open.
func (s *auditSink) Close() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.w.(io.Closer).Close()
}

func (s *auditSink) name() string {
	if s.path == "" {
		return "stdout"
	}
	return s.path
}

// openAudit opens [log] audit: stdout for "-", else the file, appended to.
func (g *Gateway) openAudit() (io.Writer, error) {
	path := ""
	if g.cfg.Log.Audit != "-" {
		path = g.cfg.Path(g.cfg.Log.Audit)
	}
	s, err := openAuditSink(path, g.log)
	if err != nil {
		return nil, err
	}
	g.auditOut = s
	g.closers = append(g.closers, s)
	return s, nil
}

// reopenAudit reopens the audit file after rotation; on failure the old
// file keeps receiving events.
func (g *Gateway) reopenAudit() {
	if g.auditOut == nil {
		return
	}
	if err := g.auditOut.Reopen(); err != nil {
		g.log.Error("audit log not reopened; still writing to the file that was open", "err", err)
	}
}

// auditWriteErrors counts failed audit writes; 0 when the caller supplied
// its own audit logger (Options.Audit).
func (g *Gateway) auditWriteErrors() uint64 {
	if g.auditOut == nil {
		return 0
	}
	return g.auditOut.failures.Load()
}
