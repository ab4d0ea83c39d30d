package overlay_test

import (
	"encoding/binary"
	"flag"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/overlay"
)

var compare = flag.Bool("compare", false, "run TestCompareThroughput (side-by-side variant ratios)")

// ackSink reads length-prefixed bursts and acknowledges each with one byte.
func ackSink(r *overlay.TCPRequest) {
	c, err := r.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint64(hdr[:]))); err != nil {
			return
		}
		if _, err := c.Write([]byte{1}); err != nil {
			return
		}
	}
}

// TestCompareThroughput measures the link and TCP variants side by side in
// one process: every variant has its own pair of overlays and one TCP flow,
// and rounds send the same burst through each variant in rotating order, so
// that whatever else the machine does hits all variants alike. It prints
// each variant's MB/s and MB per CPU-second relative to the default.
//
//	go test ./overlay -run TestCompareThroughput -compare -v
func TestCompareThroughput(t *testing.T) {
	if !*compare {
		t.Skip("needs -compare")
	}
	const (
		rounds = 12
		burst  = 16 << 20
	)
	for _, tr := range transports {
		type run struct {
			name      string
			c         net.Conn
			wall, cpu time.Duration
			walls     []time.Duration
		}
		var runs []*run
		for _, v := range benchVariants {
			restore := func() {}
			if v.batch != 0 {
				old := overlay.SetLinkBatchSize(v.batch)
				restore = func() { overlay.SetLinkBatchSize(old) }
			}
			oldGRO, oldGSO := overlay.SetLinkGRO(!v.nogro), overlay.SetLinkGSO(overlay.GSOHost)
			if v.gso != "" {
				overlay.SetLinkGSO(gsoMode(v.gso))
			}
			a, _ := siteLinkPairWith(t, tr, v.tcp, ackSink)
			overlay.SetLinkGRO(oldGRO)
			overlay.SetLinkGSO(oldGSO)
			restore()
			c, err := a.DialTCP(ctxTimeout(t, 10*time.Second), netip.MustParseAddrPort("100.81.1.10:9"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			runs = append(runs, &run{name: v.name, c: c})
		}
		buf := make([]byte, 64<<10)
		send := func(r *run) {
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], burst)
			start, cpu0 := time.Now(), cpuTime()
			r.c.Write(hdr[:])
			for sent := 0; sent < burst; sent += len(buf) {
				if _, err := r.c.Write(buf); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := io.ReadFull(r.c, hdr[:1]); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			r.wall += d
			r.cpu += cpuTime() - cpu0
			r.walls = append(r.walls, d)
		}
		for _, r := range runs { // warm up: handshakes, window growth
			send(r)
			r.wall, r.cpu, r.walls = 0, 0, nil
		}
		for i := range rounds {
			for j := range runs {
				send(runs[(i+j)%len(runs)])
			}
		}
		// The baseline is the geometric mean of the default's two copies
		// (the first and the last pair created); their ratio to each
		// other is the noise floor.
		mb := float64(rounds*burst) / 1e6
		var baseWall, baseCPU float64 = 1, 1
		k := 0
		for _, r := range runs {
			if strings.HasPrefix(r.name, "default") {
				baseWall *= mb / r.wall.Seconds()
				baseCPU *= mb / r.cpu.Seconds()
				k++
			}
		}
		baseWall, baseCPU = math.Pow(baseWall, 1/float64(k)), math.Pow(baseCPU, 1/float64(k))
		for _, r := range runs {
			slices.Sort(r.walls)
			med := r.walls[len(r.walls)/2]
			wall, cpu := mb/r.wall.Seconds(), mb/r.cpu.Seconds()
			t.Logf("%s/%-9s %7.1f MB/s (median burst %6.1f MB/s) %7.1f MB/cpu-s   ratio to default: MB/s %.2f, MB/cpu-s %.2f",
				tr, r.name, wall, burst/1e6/med.Seconds(), cpu, wall/baseWall, cpu/baseCPU)
		}
	}
}
