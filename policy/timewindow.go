package policy

import (
	"fmt"
	"strings"
	"sync"
	"time"

	_ "time/tzdata" // time zones must not depend on the host's files
)

// timeWindow is a compiled `when`. Grammar (fields separated by spaces):
//
//	when  = [days] [clock] [zone]            at least one of days and clock
//	days  = span {"," span}
//	span  = day | day "-" day                 a range may wrap: "fri-mon"
//	day   = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun"
//	clock = HH:MM "-" HH:MM                   24-hour; end exclusive; "24:00" ends at midnight
//	zone  = an IANA zone name such as "Europe/London"; UTC when omitted
//
// Examples: "mon-fri 07:00-20:00 Europe/London", "sat,sun", "22:00-06:00",
// "fri 22:00-06:00 Europe/London".
//
// Omitted days mean every day; an omitted clock means the whole day. A clock
// whose end is not after its start crosses midnight, and the days name the
// day on which the window STARTS: "fri 22:00-06:00" covers Friday 22:00 to
// Saturday 06:00. The window is evaluated on the wall clock of its zone, so
// "07:00" stays 07:00 local across daylight-saving changes (a wall time that
// a change skips simply never occurs).
type timeWindow struct {
	text       string
	days       uint8  // bit d set: the window starts on time.Weekday d
	start, end uint16 // minutes after local midnight; end exclusive, may be <= start
	loc        *time.Location
}

var dayNames = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseTimeWindow parses the grammar above.
func parseTimeWindow(s string) (*timeWindow, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty time window")
	}
	w := &timeWindow{text: s, days: 0x7f, start: 0, end: 24 * 60, loc: time.UTC}
	i := 0
	sawDays, sawClock := false, false
	if d, ok, err := parseDays(f[i]); ok {
		if err != nil {
			return nil, err
		}
		w.days, sawDays = d, true
		i++
	}
	if i < len(f) && strings.Contains(f[i], ":") {
		st, en, err := parseClock(f[i])
		if err != nil {
			return nil, err
		}
		w.start, w.end, sawClock = st, en, true
		i++
	}
	if i < len(f) && f[i] != "" && f[i][0] >= '0' && f[i][0] <= '9' {
		// No zone name starts with a digit: this is a clock, badly written.
		return nil, fmt.Errorf("time window %q: bad clock %q: write HH:MM-HH:MM on the 24-hour clock, e.g. 08:00-18:00", s, f[i])
	}
	if !sawDays && !sawClock {
		return nil, fmt.Errorf("time window %q: want [DAYS] [HH:MM-HH:MM] [ZONE], e.g. \"mon-fri 07:00-20:00 Europe/London\"", s)
	}
	if i < len(f) {
		name := f[i]
		if name == "Local" || name == "" {
			return nil, fmt.Errorf("time window %q: zone must be an IANA name such as Europe/London", s)
		}
		loc, err := loadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("time window %q: unknown time zone %q", s, name)
		}
		w.loc = loc
		i++
	}
	if i < len(f) {
		return nil, fmt.Errorf("time window %q: unexpected %q", s, f[i])
	}
	return w, nil
}

// parseDays parses a day list. ok is false when s does not look like one
// (so it may be a clock or a zone).
func parseDays(s string) (days uint8, ok bool, err error) {
	low := strings.ToLower(s)
	for _, span := range strings.Split(low, ",") {
		a, b, isRange := strings.Cut(span, "-")
		da := dayIndex(a)
		if da < 0 {
			if !ok {
				return 0, false, nil
			}
			return 0, true, fmt.Errorf("unknown day %q in %q (mon tue wed thu fri sat sun)", a, s)
		}
		ok = true
		db := da
		if isRange {
			if db = dayIndex(b); db < 0 {
				return 0, true, fmt.Errorf("unknown day %q in %q (mon tue wed thu fri sat sun)", b, s)
			}
		}
		for d := da; ; d = (d + 1) % 7 {
			days |= 1 << d
			if d == db {
				break
			}
		}
	}
	return days, ok, nil
}

func dayIndex(s string) int {
	for i, n := range dayNames {
		if s == n {
			return i
		}
	}
	return -1
}

func parseClock(s string) (start, end uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("bad clock %q: want HH:MM-HH:MM", s)
	}
	if start, err = parseHHMM(a, false); err != nil {
		return 0, 0, err
	}
	if end, err = parseHHMM(b, true); err != nil {
		return 0, 0, err
	}
	if start == end {
		return 0, 0, fmt.Errorf("clock %q is empty: start and end are the same", s)
	}
	return start, end, nil
}

func parseHHMM(s string, isEnd bool) (uint16, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("bad time %q: want HH:MM", s)
	}
	h, m := 0, 0
	for _, c := range s[:2] {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad time %q: want HH:MM", s)
		}
		h = h*10 + int(c-'0')
	}
	for _, c := range s[3:] {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad time %q: want HH:MM", s)
		}
		m = m*10 + int(c-'0')
	}
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !isEnd)) {
		return 0, fmt.Errorf("bad time %q: out of range", s)
	}
	return uint16(h*60 + m), nil
}

// active reports whether t falls inside the window. It does not allocate.
func (w *timeWindow) active(t time.Time) bool {
	// One zone lookup (Clock and Weekday would each do their own): the
	// local wall clock is the Unix time shifted by the zone's offset.
	_, off := t.In(w.loc).Zone()
	secs := t.Unix() + int64(off)
	day := secs / 86400
	if secs < 0 && secs%86400 != 0 {
		day--
	}
	mins := uint16((secs - day*86400) / 60)
	wd := uint(((day+4)%7 + 7) % 7) // 1 January 1970 was a Thursday
	if w.start < w.end {
		return w.days&(1<<wd) != 0 && w.start <= mins && mins < w.end
	}
	// Crosses midnight: the evening part starts today, the morning part
	// belongs to a window that started yesterday.
	if w.days&(1<<wd) != 0 && mins >= w.start {
		return true
	}
	yesterday := (wd + 6) % 7
	return w.days&(1<<yesterday) != 0 && mins < w.end
}

// Time zones already loaded: time.LoadLocation reads the embedded database
// each time, and a large policy names the same few zones thousands of times.
var (
	zonesMu sync.Mutex
	zones   = map[string]*time.Location{}
)

func loadLocation(name string) (*time.Location, error) {
	zonesMu.Lock()
	defer zonesMu.Unlock()
	if loc, ok := zones[name]; ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	if len(zones) < 1000 {
		zones[name] = loc
	}
	return loc, nil
}
