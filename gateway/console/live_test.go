package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// streamRecorder collects a server-sent event stream, event by event.
type streamRecorder struct {
	header http.Header
	mu     sync.Mutex
	buf    strings.Builder
	events []string // "event: x\ndata: ..." each
}

func (r *streamRecorder) Header() http.Header { return r.header }
func (r *streamRecorder) WriteHeader(int)     {}
func (r *streamRecorder) Flush()              {}

func (r *streamRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	for {
		s := r.buf.String()
		i := strings.Index(s, "\n\n")
		if i < 0 {
			return len(p), nil
		}
		r.events = append(r.events, s[:i])
		r.buf.Reset()
		r.buf.WriteString(s[i+2:])
	}
}

// take returns the names of the events received since the last take.
func (r *streamRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, e := range r.events {
		names = append(names, strings.TrimPrefix(strings.SplitN(e, "\n", 2)[0], "event: "))
	}
	r.events = nil
	return names
}

// The event stream sends a decision at once, the flow table within
// flowsSoon of it (not once per decision), and the table every flowsEvery
// when nothing happens.
func TestEventsPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := newTestServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		rec := &streamRecorder{header: http.Header{}}
		done := make(chan struct{})
		go func() {
			s.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil).WithContext(ctx))
			close(done)
		}()
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0] != "flows" {
			t.Fatalf("on opening: %v, want the flow table", got)
		}

		for range 5 {
			src.feed.Publish(Decision{Verdict: "allow", Identity: "alice"})
		}
		synctest.Wait()
		if got := rec.take(); strings.Join(got, " ") != "decision decision decision decision decision" {
			t.Fatalf("after five decisions: %v, want five decisions and no table yet", got)
		}
		time.Sleep(flowsSoon)
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0] != "flows" {
			t.Fatalf("%v after the decisions: %v, want one flow table", flowsSoon, got)
		}

		time.Sleep(flowsEvery - flowsSoon/2)
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("quiet, before %v: %v, want nothing", flowsEvery, got)
		}
		time.Sleep(flowsSoon)
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0] != "flows" {
			t.Fatalf("quiet, after %v: %v, want the flow table", flowsEvery, got)
		}
		cancel()
		<-done
	})
}
