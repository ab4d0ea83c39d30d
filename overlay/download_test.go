package overlay_test

import (
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay"
)

// TestRepeatedDownloads downloads a large body from the gateway many times
// over one transport and fails when any run takes over four times the
// median: a stall (a sender waiting out retransmission timeouts) costs
// 5-20x; CPU shared with other work cost up to 2.9x here. OVERLAY_DOWNLOADS=n sets the number
// of runs (default 8), OVERLAY_DOWNLOAD_MB the size (default 64).
func TestRepeatedDownloads(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a load test: skipped with -short and -race")
	}
	runs, size := 8, 64
	if v, err := strconv.Atoi(os.Getenv("OVERLAY_DOWNLOADS")); err == nil {
		runs = v
	}
	if v, err := strconv.Atoi(os.Getenv("OVERLAY_DOWNLOAD_MB")); err == nil {
		size = v
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		n := newTestNet(t, tr, overlay.Handler{TCP: sizedTCP, UDP: refuseUDP}, overlay.Config{})
		p := n.clients(1)[0]
		var took []time.Duration
		for range runs {
			c, err := p.DialContext(ctxTimeout(t, 10*time.Second), "tcp", serviceAddr.String())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			fetch(t, c, size<<20)
			took = append(took, time.Since(start))
			c.Close()
		}
		sorted := slices.Clone(took)
		slices.Sort(sorted)
		median := sorted[len(sorted)/2]
		t.Logf("%d x %d MiB: median %v, runs %v", runs, size, median.Round(time.Millisecond), took)
		if worst := sorted[len(sorted)-1]; worst > 4*median {
			t.Errorf("a download took %v, over four times the median %v (a stall)", worst.Round(time.Millisecond), median.Round(time.Millisecond))
		}
	})
}

// TestCompareRACK (with OVERLAY_COMPARE_RACK=1) downloads alternately from
// a gateway with gVisor's RACK on and one with it off, and logs the medians
// and their ratio: what turning RACK off costs on a path that never stalls.
func TestCompareRACK(t *testing.T) {
	if os.Getenv("OVERLAY_COMPARE_RACK") == "" {
		t.Skip("set OVERLAY_COMPARE_RACK=1")
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		conns := map[bool]net.Conn{}
		for _, rack := range []bool{true, false} {
			old := overlay.SetTCPRACK(rack)
			n := newTestNet(t, tr, overlay.Handler{TCP: sizedTCP, UDP: refuseUDP}, overlay.Config{})
			overlay.SetTCPRACK(old)
			c, err := n.clients(1)[0].DialContext(ctxTimeout(t, 10*time.Second), "tcp", serviceAddr.String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			conns[rack] = c
		}
		took := map[bool][]time.Duration{}
		for i := range 16 {
			rack := i%2 == 0
			start := time.Now()
			fetch(t, conns[rack], 64<<20)
			took[rack] = append(took[rack], time.Since(start))
		}
		median := func(d []time.Duration) time.Duration {
			slices.Sort(d)
			return d[len(d)/2]
		}
		on, off := median(took[true]), median(took[false])
		t.Logf("64 MiB, median of 8: RACK on %v, off %v (off/on %.2f)", on.Round(time.Millisecond), off.Round(time.Millisecond), float64(off)/float64(on))
	})
}
