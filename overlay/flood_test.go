package overlay_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/overlay"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// heapAfterGC is the live heap after the garbage collector ran twice
// (sync.Pools keep their items through one GC).
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSYNFloodMemory: one peer, in a process of its own, floods SYNs from
// ever new ports over real UDP at a service whose handler is slow (a
// backend that takes its time to answer). The gateway's heap must stay
// under its budget (Config.HeapBudget, plus what one receive holds)
// during the flood and come back near its baseline after, and another
// peer must still connect.
func TestSYNFloodMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a load test: skipped with -short and -race")
	}
	attacker := netip.MustParseAddr("100.80.1.200")
	n := newTestNet(t, udpTransport, overlay.Handler{
		TCP: func(r *overlay.TCPRequest) {
			if r.Src.Addr() != attacker {
				echoTCP(r)
				return
			}
			time.Sleep(50 * time.Millisecond) // a slow backend
			r.Reject()
		},
		UDP: refuseUDP,
	}, overlay.Config{HeapBudget: floodHeapBudget})
	victim := n.newPeer(netip.Addr{})
	key := mustKey(t)
	if err := n.gw.SetPeers([]overlay.Peer{victim.peer, {
		PublicKey:  key.Public(),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(attacker, 32)},
	}}); err != nil {
		t.Fatal(err)
	}
	dial := func() {
		t.Helper()
		c, err := victim.DialContext(ctxTimeout(t, 20*time.Second), "tcp", serviceAddr.String())
		if err != nil {
			t.Fatalf("the flood's victim cannot connect: %v", err)
		}
		c.Close()
	}
	dial() // the baseline includes the victim's tunnel and buffers
	base := heapAfterGC()

	const synCount = 300_000
	cmd := exec.Command(os.Args[0], "-test.run=^TestSYNFlooder$")
	cmd.Env = append(os.Environ(),
		"OVERLAY_FLOODER=1",
		"OVERLAY_FLOOD_KEY="+hex.EncodeToString(key[:]),
		"OVERLAY_FLOOD_GW="+n.gwKey.Public().Hex()+"@"+n.gwEP.String(),
		"OVERLAY_FLOOD_SRC="+attacker.String(),
		"OVERLAY_FLOOD_N="+strconv.Itoa(synCount))
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak uint64
	var m runtime.MemStats
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("flooder: %v\n%s", err, out)
			}
			break wait
		case <-tick.C:
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	// The victim connects while the gateway still works through the
	// flood's backlog (its peer has a queue of its own).
	dial()
	// Then the heap comes back once the backlog is gone.
	var after uint64
	for range 50 {
		if after = heapAfterGC(); after < base+32<<20 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("gateway heap: %d MB before, peak %d MB during (budget %d MB, %d batches dropped), %d MB after; flooder: %s",
		base>>20, peak>>20, floodHeapBudget>>20, n.gw.HeapBudgetDrops(), after>>20, strings.TrimSpace(out.String()))
	// A receive that passed the gate may still take a batch per receive
	// goroutine and the queues' containers: 64 MB of slack.
	if peak > floodHeapBudget+64<<20 {
		t.Errorf("heap peaked at %d MB during the flood, over its %d MB budget", peak>>20, floodHeapBudget>>20)
	}
	if after > base+32<<20 {
		t.Errorf("heap %d MB after the flood (baseline %d MB)", after>>20, base>>20)
	}
}

// floodHeapBudget is the gateway's heap budget in TestSYNFloodMemory: well
// above its baseline, well under what the flood takes without a bound
// (about 2 GB here).
const floodHeapBudget = 256 << 20

// TestSYNFlooder is the flooding peer of TestSYNFloodMemory, run in a
// process of its own so that its own WireGuard queues do not count.
func TestSYNFlooder(t *testing.T) {
	if os.Getenv("OVERLAY_FLOODER") == "" {
		t.Skip("run by TestSYNFloodMemory")
	}
	var key wgkey.Private
	kb, _ := hex.DecodeString(os.Getenv("OVERLAY_FLOOD_KEY"))
	copy(key[:], kb)
	gwPub, gwEP, _ := strings.Cut(os.Getenv("OVERLAY_FLOOD_GW"), "@")
	src := netip.MustParseAddr(os.Getenv("OVERLAY_FLOOD_SRC"))
	count, _ := strconv.Atoi(os.Getenv("OVERLAY_FLOOD_N"))
	ct := newChanTUN()
	dev := device.NewDevice(ct, conn.NewDefaultBind(), &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	defer dev.Close()
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\n", hex.EncodeToString(key[:]), gwPub, gwEP)); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range count {
		p := netip.AddrPortFrom(src, uint16(1024+i%60000))
		ct.in <- ipv4Packet(src, serviceAddr.Addr(), header.TCPProtocolNumber, uint16(i), 0x4000,
			tcpSegment(p, serviceAddr, uint32(i)*7919, header.TCPFlagSyn))
	}
	for len(ct.in) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the device's queues drain
	fmt.Printf("%d SYNs in %v\n", count, time.Since(start).Round(time.Millisecond))
}
