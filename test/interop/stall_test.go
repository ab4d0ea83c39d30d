package interop

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// TestDownloadStalls downloads 200 MB (iperf3 -R -n: the far side sends)
// 20 times through wardgate from a loopback backend, and as many times
// over plain WireGuard between two namespaces with the same client, and
// fails when a download through wardgate takes over three times its
// median: a stall (a sender waiting out retransmission timeouts) costs
// 5-20x, CPU shared with other work about 1.5x. WARDGATE_STALL_RUNS and
// WARDGATE_STALL_SIZE (iperf3 -n syntax) change the defaults.
func TestDownloadStalls(t *testing.T) {
	requireInterop(t, "iperf3", "ping")
	runs, size := 8, "100M" // make test; make stress runs the full 20 x 200 MB
	if os.Getenv("WARDGATE_STRESS") == "long" {
		runs, size = 20, "200M"
	}
	if v, err := strconv.Atoi(os.Getenv("WARDGATE_STALL_RUNS")); err == nil {
		runs = v
	}
	if v := os.Getenv("WARDGATE_STALL_SIZE"); v != "" {
		size = v
	}

	loPort := freeTCPPort(t)
	iperfServer(t, nil, "127.0.0.1", loPort)

	ka, kb := newKeypair(t), newKeypair(t)
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	wa := newClientWith(t, "stall-a", "100.90.0.1", ka, kb.pub, pb, clientOpts{listenPort: pa, routes: []string{"100.90.0.2/32"}})
	wb := newClientWith(t, "stall-b", "100.90.0.2", kb, ka.pub, pa, clientOpts{listenPort: pb, routes: []string{"100.90.0.1/32"}})
	iperfServer(t, wb.netns, "100.90.0.2", 5201)

	gwKeys, ck := newKeypair(t), newKeypair(t)
	gwPort := freeUDPPort(t)
	s := writeSiteOn(t, "0.0.0.0", "leeds", gwKeys, gwPort, benchPolicy(gwKeys.pub, ck.pub, loPort, startAcceptClose(t)), "")
	startGateway(t, s.dir, gwPort)
	c := newClientWith(t, "stall-c", "100.80.1.10", ck, gwKeys.pub, gwPort, clientOpts{})
	testwait.Until(t, 10*time.Second, "tunnel to wardgate", func() bool {
		_, err := c.exec(3*time.Second, "ping", "-c", "1", "-W", "1", "100.80.0.1")
		return err == nil
	})

	download := func(ns *netns, addr string, port int) time.Duration {
		args := []string{"-c", addr, "-p", strconv.Itoa(port), "-R", "-n", size, "-J"}
		start := time.Now()
		out, err := ns.cmd(context.Background(), "iperf3", args...).Output()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
		var r struct {
			End struct {
				SumReceived struct {
					Seconds float64 `json:"seconds"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if json.Unmarshal(out, &r) == nil && r.End.SumReceived.Seconds > 0 {
			took = time.Duration(r.End.SumReceived.Seconds * float64(time.Second))
		}
		return took
	}
	var plain, through []time.Duration
	for range runs {
		plain = append(plain, download(wa.netns, "100.90.0.2", 5201))
		through = append(through, download(c.netns, "100.81.0.10", loPort))
	}
	median := func(d []time.Duration) (time.Duration, time.Duration) {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2], s[len(s)-1]
	}
	pm, pw := median(plain)
	tm, tw := median(through)
	t.Logf("%d x %s: plain WireGuard median %v worst %v; through wardgate median %v worst %v",
		runs, size, pm.Round(time.Millisecond), pw.Round(time.Millisecond), tm.Round(time.Millisecond), tw.Round(time.Millisecond))
	t.Logf("through wardgate, each run: %v", through)
	if tw > 3*tm {
		t.Errorf("a download through wardgate took %v, over three times its median %v (a stall)", tw.Round(time.Millisecond), tm.Round(time.Millisecond))
	}
}
