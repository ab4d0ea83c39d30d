package gateway

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// TestUDPFlowWithoutEndpointReleasesEverything: when the overlay cannot
// give an admitted UDP flow an endpoint it runs the flow with no conn; the
// flow's slot, its flow-table entry and the shutdown wait are released.
func TestUDPFlowWithoutEndpointReleasesEverything(t *testing.T) {
	be := startTestBackends(t)
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	tg := startTestGateway(t, memnet.NewSwitch(), keys[0], "leeds", sprintfPolicy(keys[0], keys[1], keys[2], be), "[limits]\ndrain = \"5s\"\nflows_per_identity = 1\n")
	src := netip.MustParseAddrPort("100.80.1.10:5353")
	dst := netip.AddrPortFrom(netip.MustParseAddr("100.81.0.13"), be.udpEcho.Port())
	for range 3 { // more than flows_per_identity: each must give its slot back
		fn := tg.gw.admitUDP(src, dst)
		if fn == nil {
			t.Fatal("the flow was refused: a slot leaked")
		}
		fn(nil)
		if n := countFlows(tg.gw, "alice"); n != 0 {
			t.Fatalf("%d flows left in the table", n)
		}
	}
	tg.audit.waitEvent(t, map[string]any{"event": "flow.end", "identity": "alice", "error": "accept: the overlay could not set up the flow"})
	start := time.Now()
	tg.gw.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop waited %v for a flow that never ran", d)
	}
}

// TestIdleUDPFlowsHoldNoBuffers: live but idle UDP flows hold no copy
// buffers (two 64 KiB buffers each before), so a client's thousand idle
// flows do not pin 128 MiB.
func TestIdleUDPFlowsHoldNoBuffers(t *testing.T) {
	be := startTestBackends(t)
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	tg := startTestGateway(t, memnet.NewSwitch(), keys[0], "leeds", sprintfPolicy(keys[0], keys[1], keys[2], be), "[limits]\ndrain = \"1s\"\n")
	alice := tg.client(t, keys[1], "100.80.1.10")
	dst := netip.AddrPortFrom(netip.MustParseAddr("100.81.0.13"), be.udpEcho.Port())
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	if err := udpEcho(alice, dst); err != nil { // warm up: sessions, pools
		t.Fatal(err)
	}
	before := heap()
	const flows = 200
	var conns []net.Conn
	for range flows {
		c, err := alice.DialUDP(dst)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 16)); err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
	testwait.Until(t, 5*time.Second, "the flows", func() bool { return countFlows(tg.gw, "alice") >= flows })
	per := int64(heap()-before) / flows
	t.Logf("heap per idle UDP flow, both ends: %d bytes", per)
	if per > 48<<10 {
		t.Errorf("%d bytes of heap per idle UDP flow; copy buffers held while idle?", per)
	}
	for _, c := range conns {
		c.Close()
	}
}
