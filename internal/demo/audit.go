package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// event is one audit line as a gateway wrote it, with the site of the
// gateway that wrote it.
type event struct {
	at     string // the gateway ("leeds", "york") whose audit log it is
	fields map[string]any
}

func (e event) name() string { return e.str("event") }

// str returns a field as text ("" when absent).
func (e event) str(k string) string {
	v, ok := e.fields[k]
	if !ok || v == nil {
		return ""
	}
	if f, ok := v.(float64); ok {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(v)
}

// match is a condition on an event.
type match func(event) bool

// is matches events logged by gateway at with the given event name and
// fields.
func is(at, name string, fields ...string) match {
	return func(e event) bool {
		if e.at != at || e.name() != name {
			return false
		}
		for i := 0; i+1 < len(fields); i += 2 {
			if e.str(fields[i]) != fields[i+1] {
				return false
			}
		}
		return true
	}
}

// auditLog collects the audit events of every gateway in the demo, in the
// order they were written. Scenes wait for the events their actions cause
// and print rows from them: the table shows what the gateways logged.
type auditLog struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced on every new event
	raw     io.Writer     // optional copy of every line (--verbose)
}

func newAuditLog(raw io.Writer) *auditLog {
	return &auditLog{changed: make(chan struct{}), raw: raw}
}

// writer returns the io.Writer for gateway at's audit logger.
func (l *auditLog) writer(at string) io.Writer { return &siteWriter{log: l, at: at} }

// siteWriter splits one gateway's audit output into lines. slog's JSON
// handler writes each record with one Write call, but partial lines are
// kept for the next call anyway.
type siteWriter struct {
	log     *auditLog
	at      string
	mu      sync.Mutex
	partial []byte
}

func (w *siteWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.log.add(w.at, line)
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (l *auditLog) add(at string, line []byte) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		fields = map[string]any{"event": "unparsed", "line": string(line)}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.raw != nil {
		fmt.Fprintf(l.raw, "audit %-5s %s\n", at, line)
	}
	l.events = append(l.events, event{at: at, fields: fields})
	close(l.changed)
	l.changed = make(chan struct{})
}

// mark is the position of the next event: waits from a mark see only what
// was logged after it.
func (l *auditLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// since returns the events from position from on that match m.
func (l *auditLog) since(from int, m match) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event
	for _, e := range l.events[min(from, len(l.events)):] {
		if m(e) {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event from position from on that matches m,
// waiting up to d for it.
func (l *auditLog) wait(ctx context.Context, from int, d time.Duration, what string, m match) (event, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for _, e := range l.events[min(from, len(l.events)):] {
			if m(e) {
				l.mu.Unlock()
				return e, nil
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return event{}, fmt.Errorf("no audit event for %s within %v", what, d)
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// count returns how many events each gateway logged, by gateway.
func (l *auditLog) count() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int)
	for _, e := range l.events {
		out[e.at]++
	}
	return out
}
