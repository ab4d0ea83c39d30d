package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// jsonLines is an operational log that tests read back line by line.
type jsonLines struct{ syncBuffer }

func (l *jsonLines) logger() *slog.Logger {
	return slog.New(newRepeatFilter(slog.NewJSONHandler(l, nil)))
}

func (l *jsonLines) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	data := append([]byte(nil), l.b.Bytes()...)
	l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// summary prints lines as "msg src[ suppressed]" for comparison.
func summary(lines []map[string]any) []string {
	var out []string
	for _, l := range lines {
		src := l["src"]
		if src == nil {
			src = l["peer"]
		}
		s := fmt.Sprint(l["msg"], " ", src)
		if n, ok := l["suppressed"]; ok {
			s += fmt.Sprint(" suppressed=", n)
		}
		out = append(out, s)
	}
	return out
}

func TestLogRepeats(t *testing.T) {
	const every = repeatInterval
	addr := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	for _, tc := range []struct {
		name string
		log  func(l *slog.Logger)
		want []string
	}{
		{"one source, many ports: one line, then one summary", func(l *slog.Logger) {
			for i := range 10 {
				l.Warn("reset", "src", addr(fmt.Sprintf("100.80.1.10:%d", 40000+i)))
				time.Sleep(time.Second)
			}
		}, []string{"reset 100.80.1.10:40000", "reset 100.80.1.10:40009 suppressed=9"}},
		{"sources apart", func(l *slog.Logger) {
			l.Warn("reset", "src", "100.80.1.10:1")
			l.Warn("reset", "src", "100.80.1.11:1")
			l.Warn("reset", "src", "100.80.1.10:2")
		}, []string{"reset 100.80.1.10:1", "reset 100.80.1.11:1", "reset 100.80.1.10:2 suppressed=1"}},
		{"messages apart", func(l *slog.Logger) {
			l.Warn("reset", "src", "100.80.1.10:1")
			l.Warn("panic", "src", "100.80.1.10:1")
		}, []string{"reset 100.80.1.10:1", "panic 100.80.1.10:1"}},
		{"no source: every line", func(l *slog.Logger) {
			l.Info("reloaded")
			l.Info("reloaded")
		}, []string{"reloaded <nil>", "reloaded <nil>"}},
		{"peer bound by With", func(l *slog.Logger) {
			pl := l.With("peer", "york")
			pl.Warn("probe failed")
			pl.Warn("probe failed")
			pl.Warn("probe failed")
		}, []string{"probe failed york", "probe failed york suppressed=2"}},
		// Every 7s, so that no line falls on an interval's end: 0, then
		// 7..56, 63..119 and 126..175 in the three intervals.
		{"a flood: one summary per interval", func(l *slog.Logger) {
			for range 26 {
				l.Warn("reset", "src", "100.80.1.10:1")
				time.Sleep(7 * time.Second)
			}
		}, []string{"reset 100.80.1.10:1", "reset 100.80.1.10:1 suppressed=8",
			"reset 100.80.1.10:1 suppressed=9", "reset 100.80.1.10:1 suppressed=8"}},
		{"quiet for an interval: the next line passes at once", func(l *slog.Logger) {
			l.Warn("reset", "src", "100.80.1.10:1")
			time.Sleep(every + time.Second)
			l.Warn("reset", "src", "100.80.1.10:1")
		}, []string{"reset 100.80.1.10:1", "reset 100.80.1.10:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var out jsonLines
				tc.log(out.logger())
				time.Sleep(3 * every) // every interval has ended
				got := summary(out.lines(t))
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("lines:\n%q\nwant\n%q", got, tc.want)
				}
			})
		})
	}
}

// TestLogRepeatsSummaryTime: the summary is logged when the interval ends
// and carries the handler's attributes.
func TestLogRepeatsSummaryTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out jsonLines
		l := out.logger().With("component", "overlay")
		start := time.Now()
		l.Warn("reset", "src", "100.80.1.10:1")
		l.Warn("reset", "src", "100.80.1.10:2")
		time.Sleep(repeatInterval - time.Nanosecond)
		if n := len(out.lines(t)); n != 1 {
			t.Fatalf("%d lines before the interval ended", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		lines := out.lines(t)
		if len(lines) != 2 {
			t.Fatalf("lines: %v", lines)
		}
		s := lines[1]
		at, _ := time.Parse(time.RFC3339Nano, s["time"].(string))
		if !at.Equal(start.Add(repeatInterval)) || s["component"] != "overlay" || s["suppressed"] != float64(1) {
			t.Errorf("summary %v (at +%v)", s, at.Sub(start))
		}
	})
}

// TestLogRepeatsManySources: past maxRepeatSources, new sources share one
// entry per message instead of growing the table.
func TestLogRepeatsManySources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out jsonLines
		l := out.logger()
		base := netip.MustParseAddr("10.0.0.0")
		a := base
		for range maxRepeatSources + 100 {
			a = a.Next()
			l.Warn("reset", "src", netip.AddrPortFrom(a, 1))
		}
		if n := len(out.lines(t)); n != maxRepeatSources+1 {
			t.Errorf("%d lines, want %d", n, maxRepeatSources+1)
		}
		time.Sleep(2 * repeatInterval)
		lines := out.lines(t)
		if last := lines[len(lines)-1]; last["suppressed"] != float64(99) {
			t.Errorf("last line %v, want the overflow's summary of 99", last)
		}
	})
}
