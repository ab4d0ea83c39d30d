package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// repeatInterval is how often the operational log repeats a line from one
// source: the first passes, later ones within the interval are counted,
// and one summary line per interval says how many there were.
const repeatInterval = time.Minute

// maxRepeatSources bounds the sources tracked at once. Beyond it, new
// sources share one entry per message, so a flood from many addresses
// still collapses (into one line per message and interval).
const maxRepeatSources = 4096

// newRepeatFilter wraps next so that operational lines with the same
// message and the same source (a `src` or `peer` attribute, compared by
// address without the port) pass at most once per repeatInterval. The rest in
// that interval are counted; when it ends, the last of them is logged once
// more with `suppressed=N`, and that line opens the next interval. Lines
// with no source always pass: they are not one peer's noise. The audit log
// never goes through this: it records every event.
func newRepeatFilter(next slog.Handler) slog.Handler {
	return &repeatFilter{next: next, r: &repeats{every: repeatInterval, seen: make(map[repeatKey]*repeat)}}
}

type repeatFilter struct {
	next slog.Handler
	r    *repeats // shared by the handlers WithAttrs and WithGroup derive
	src  string   // a source bound by WithAttrs
}

type repeats struct {
	every time.Duration

	mu   sync.Mutex
	seen map[repeatKey]*repeat
}

type repeatKey struct{ msg, src string }

// repeat is one key's interval: the lines it suppressed and the last one,
// with the handler to log the summary through.
type repeat struct {
	n    int
	last slog.Record
	next slog.Handler
}

func (h *repeatFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *repeatFilter) Handle(ctx context.Context, r slog.Record) error {
	src := h.src
	if src == "" {
		r.Attrs(func(a slog.Attr) bool {
			src = sourceOf(a)
			return src == ""
		})
	}
	if src == "" || h.r.admit(repeatKey{r.Message, src}, r, h.next) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *repeatFilter) WithAttrs(as []slog.Attr) slog.Handler {
	src := h.src
	for _, a := range as {
		if s := sourceOf(a); s != "" {
			src = s
		}
	}
	return &repeatFilter{next: h.next.WithAttrs(as), r: h.r, src: src}
}

func (h *repeatFilter) WithGroup(name string) slog.Handler {
	return &repeatFilter{next: h.next.WithGroup(name), r: h.r, src: h.src}
}

// sourceOf is the address a src or peer attribute names, without its port
// (a scanner's every connection has another), or "" for other attributes.
func sourceOf(a slog.Attr) string {
	if a.Key != "src" && a.Key != "peer" {
		return ""
	}
	v := a.Value.Resolve()
	if ap, ok := v.Any().(netip.AddrPort); ok {
		return ap.Addr().String()
	}
	s := v.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().String()
	}
	return s
}

// admit says whether r, under k, passes now; if not, it is counted.
func (rs *repeats) admit(k repeatKey, r slog.Record, next slog.Handler) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	e := rs.seen[k]
	if e == nil && len(rs.seen) >= maxRepeatSources {
		k.src = "*"
		e = rs.seen[k]
	}
	if e == nil {
		rs.seen[k] = &repeat{}
		time.AfterFunc(rs.every, func() { rs.flush(k) })
		return true
	}
	e.n++
	e.last, e.next = r.Clone(), next
	return false
}

// flush ends k's interval: with nothing suppressed the key is forgotten,
// else the summary line is logged and a new interval starts.
func (rs *repeats) flush(k repeatKey) {
	rs.mu.Lock()
	e := rs.seen[k]
	if e.n == 0 {
		delete(rs.seen, k)
		rs.mu.Unlock()
		return
	}
	last, next, n := e.last, e.next, e.n
	*e = repeat{}
	time.AfterFunc(rs.every, func() { rs.flush(k) })
	rs.mu.Unlock()

	sum := slog.NewRecord(time.Now(), last.Level, last.Message, 0)
	last.Attrs(func(a slog.Attr) bool {
		sum.AddAttrs(a)
		return true
	})
	sum.AddAttrs(slog.Int("suppressed", n), slog.Duration("interval", rs.every))
	next.Handle(context.Background(), sum)
}
