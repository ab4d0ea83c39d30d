package gateway

import (
	"testing"
	"time"
)

func TestDenyLimiter(t *testing.T) {
	var l denyLimiter
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	logged := 0
	for i := range 1000 { // a flood within one interval
		ok, before := l.allow(t0.Add(time.Duration(i) * time.Millisecond))
		if before != 0 {
			t.Fatalf("datagram %d: a count reported inside the interval", i)
		}
		if ok {
			logged++
		}
	}
	if logged != unknownSourceBudget {
		t.Fatalf("%d lines logged, want %d", logged, unknownSourceBudget)
	}
	ok, before := l.allow(t0.Add(unknownSourceInterval))
	if !ok || before != 1000-unknownSourceBudget {
		t.Fatalf("next interval: ok=%v, suppressed %d, want %d", ok, before, 1000-unknownSourceBudget)
	}
}
