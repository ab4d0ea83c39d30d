package policy

import (
	"testing"
	"time"
)

func TestParseTimeWindow(t *testing.T) {
	tests := []struct {
		in         string
		days       uint8
		start, end uint16
		zone       string
		err        bool
	}{
		{in: "mon-fri 07:00-20:00 Europe/London", days: 0b0111110, start: 420, end: 1200, zone: "Europe/London"},
		{in: "sat,sun", days: 0b1000001, start: 0, end: 1440, zone: "UTC"},
		{in: "mon,wed,fri 09:00-17:00", days: 0b0101010, start: 540, end: 1020, zone: "UTC"},
		{in: "fri-mon", days: 0b1100011, start: 0, end: 1440, zone: "UTC"},
		{in: "sat-tue,thu", days: 0b1010111, start: 0, end: 1440, zone: "UTC"},
		{in: "22:00-06:00", days: 0x7f, start: 1320, end: 360, zone: "UTC"},
		{in: "00:00-24:00 Asia/Kolkata", days: 0x7f, start: 0, end: 1440, zone: "Asia/Kolkata"},
		{in: "MON 08:00-09:00", days: 0b0000010, start: 480, end: 540, zone: "UTC"},
		{in: "mon-fri 07:00-20:00 Europe/Lundon", err: true},
		{in: "mon-fry", err: true},
		{in: "mon 7:00-20:00", err: true},
		{in: "mon 24:00-01:00", err: true},
		{in: "mon 10:00-10:00", err: true},
		{in: "mon 10:60-11:00", err: true},
		{in: "mon 10:00", err: true},
		{in: "", err: true},
		{in: "Europe/London", err: true},
		{in: "mon 10:00-11:00 UTC extra", err: true},
		{in: "mon 10:00-11:00 Local", err: true},
	}
	for _, tt := range tests {
		w, err := parseTimeWindow(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("%q: no error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if w.days != tt.days || w.start != tt.start || w.end != tt.end || w.loc.String() != tt.zone {
			t.Errorf("%q: days %07b %d-%d %s, want %07b %d-%d %s", tt.in, w.days, w.start, w.end, w.loc, tt.days, tt.start, tt.end, tt.zone)
		}
	}
}

func TestTimeWindowActive(t *testing.T) {
	london, _ := time.LoadLocation("Europe/London")
	lt := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, london) }
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	tests := []struct {
		when string
		at   time.Time
		want bool
	}{
		// Plain weekday window; the end is exclusive.
		{"mon-fri 07:00-20:00 Europe/London", lt(2026, 3, 2, 7, 0), true},
		{"mon-fri 07:00-20:00 Europe/London", lt(2026, 3, 2, 6, 59), false},
		{"mon-fri 07:00-20:00 Europe/London", lt(2026, 3, 2, 19, 59), true},
		{"mon-fri 07:00-20:00 Europe/London", lt(2026, 3, 2, 20, 0), false},
		{"mon-fri 07:00-20:00 Europe/London", lt(2026, 3, 7, 12, 0), false}, // Saturday
		// DST in Europe/London starts Sunday 29 March 2026 at 01:00 UTC.
		// Before: 07:30 local is 07:30 UTC; after: 06:30 UTC.
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 27, 7, 30), true},   // Fri, GMT
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 27, 6, 30), false},  // Fri, 06:30 GMT
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 30, 6, 30), true},   // Mon, 07:30 BST
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 30, 19, 30), false}, // Mon, 20:30 BST
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 30, 18, 59), true},
		// DST ends Sunday 25 October 2026 at 01:00 UTC.
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 10, 23, 6, 30), true},  // Fri, 07:30 BST
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 10, 26, 6, 30), false}, // Mon, 06:30 GMT
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 10, 26, 7, 0), true},
		// The skipped hour: 01:00-02:00 local does not exist on 29 March.
		{"sun 01:00-02:00 Europe/London", utc(2026, 3, 29, 0, 59), false}, // 00:59 GMT
		{"sun 01:00-02:00 Europe/London", utc(2026, 3, 29, 1, 0), false},  // 02:00 BST
		{"sun 01:00-02:00 Europe/London", utc(2026, 3, 22, 1, 30), true},
		// Across midnight: the day names the start.
		{"fri 22:00-06:00 Europe/London", lt(2026, 3, 6, 22, 0), true},   // Fri 22:00
		{"fri 22:00-06:00 Europe/London", lt(2026, 3, 7, 2, 0), true},    // Sat 02:00
		{"fri 22:00-06:00 Europe/London", lt(2026, 3, 7, 6, 0), false},   // Sat 06:00
		{"fri 22:00-06:00 Europe/London", lt(2026, 3, 6, 2, 0), false},   // Fri 02:00: Thursday's night
		{"fri 22:00-06:00 Europe/London", lt(2026, 3, 7, 22, 30), false}, // Sat 22:30
		{"22:00-06:00", utc(2026, 3, 4, 23, 59), true},
		{"22:00-06:00", utc(2026, 3, 4, 12, 0), false},
		// Wrapping day ranges.
		{"fri-mon", utc(2026, 3, 8, 12, 0), true},  // Sunday
		{"fri-mon", utc(2026, 3, 3, 12, 0), false}, // Tuesday
		{"sat,sun", utc(2026, 3, 7, 0, 0), true},
		{"sat,sun", utc(2026, 3, 9, 0, 0), false},
		// Zones: the same instant is Monday in Kolkata and Sunday in UTC.
		{"mon 00:00-12:00 Asia/Kolkata", utc(2026, 3, 1, 20, 0), true},
		{"mon 00:00-12:00", utc(2026, 3, 1, 20, 0), false},
		// The time's own location does not matter.
		{"mon-fri 07:00-20:00 Europe/London", utc(2026, 3, 2, 7, 0).In(time.FixedZone("X", -10*3600)), true},
	}
	for _, tt := range tests {
		w, err := parseTimeWindow(tt.when)
		if err != nil {
			t.Fatalf("%q: %v", tt.when, err)
		}
		if got := w.active(tt.at); got != tt.want {
			t.Errorf("%q at %s (%s): %v, want %v", tt.when, tt.at.UTC().Format(time.RFC3339), tt.at.In(w.loc).Format("Mon 15:04 MST"), got, tt.want)
		}
	}
}

func TestTimeWindowNoAlloc(t *testing.T) {
	w, err := parseTimeWindow("mon-fri 07:00-20:00 Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	if n := testing.AllocsPerRun(100, func() { w.active(at) }); n != 0 {
		t.Errorf("active allocates %v", n)
	}
}

// TestTimeWindowMatchesClock compares the arithmetic in active with the
// time package's own Clock and Weekday over many instants and zones.
func TestTimeWindowMatchesClock(t *testing.T) {
	zones := []string{"Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"}
	for _, z := range zones {
		w, err := parseTimeWindow("mon,wed,sat 07:13-20:47 " + z)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Date(1965, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 20000; i++ {
			at := start.Add(time.Duration(i) * 37 * 61 * time.Minute)
			lt := at.In(w.loc)
			h, m, _ := lt.Clock()
			mins := h*60 + m
			wd := lt.Weekday()
			want := (wd == time.Monday || wd == time.Wednesday || wd == time.Saturday) && mins >= 7*60+13 && mins < 20*60+47
			if got := w.active(at); got != want {
				t.Fatalf("%s at %s (%s): %v, want %v", z, at.Format(time.RFC3339), lt.Format(time.RFC3339), got, want)
			}
		}
	}
}
