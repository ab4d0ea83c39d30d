package overlay

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// Memory under a flood. wireguard-go takes a 64 KiB buffer from its pool
// for every datagram it receives, however small, and holds it until the
// packet has gone through its queues (up to 1024 batches of up to 128
// packets per peer). A peer that sends faster than the gateway can
// process, a SYN flood of 60-byte packets for instance, so makes it hold
// tens of thousands of buffers: about 2 GB of heap for 300,000 SYNs in
// 0.7 s. The queue sizes are constants of wireguard-go; what wardgate
// controls is the UDP transport under it.
//
// heapGate bounds the heap there: after each receive, while the heap
// holds more than the budget, the transport data packets of the batch are
// dropped, as a NIC drops under overload, and a collection is started
// (the pooled buffers of packets already processed are garbage only to
// the collector). Handshake messages always pass: they are few (the
// handshake queue and its cookie reply bound them), and a gateway that
// dropped them could not finish the handshakes that let queued packets
// drain, and would stay over its budget. Dropping rather than waiting
// keeps the receive goroutines running, so nothing waits on the heap.
// Under the budget a batch costs one read of the runtime's heap figure.
//
// After a flood the heap is collected but the pages stay with the process
// until the runtime's scavenger returns them, which takes minutes; the
// gate returns them at once (debug.FreeOSMemory) the first time the heap
// is back under half the budget.
type heapGate struct {
	budget uint64

	sample  []metrics.Sample
	mu      sync.Mutex // guards sample
	lastGC  atomic.Int64
	flooded atomic.Bool   // the gate dropped since memory was last returned
	drops   atomic.Uint64 // batches that had data packets dropped
}

// heapGateGCEvery spaces the collections a closed gate starts.
const heapGateGCEvery = 20 * time.Millisecond

func newHeapGate(budget uint64) *heapGate {
	return &heapGate{budget: budget, sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

// heap is the memory held by heap objects, live or not yet collected.
func (g *heapGate) heap() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	metrics.Read(g.sample)
	return g.sample[0].Value.Uint64()
}

// over reports whether the heap is over the budget, starting a collection
// (at most every heapGateGCEvery) when it is, and returning memory to the
// system once it is back under half the budget after a flood.
func (g *heapGate) over() bool {
	h := g.heap()
	if h < g.budget {
		if h < g.budget/2 && g.flooded.CompareAndSwap(true, false) {
			go debug.FreeOSMemory()
		}
		return false
	}
	g.flooded.Store(true)
	now := time.Now().UnixNano()
	if last := g.lastGC.Load(); now-last >= int64(heapGateGCEvery) && g.lastGC.CompareAndSwap(last, now) {
		go runtime.GC()
	}
	return true
}

// filter drops, of the n packets received, those the gate does not let
// through: none under the budget, the transport data packets over it. A
// dropped packet's size becomes 0, which wireguard-go skips as too short
// (it reads each packet from its own buffer at the same index, so the
// batch cannot be compacted).
func (g *heapGate) filter(packets [][]byte, sizes []int, n int) {
	if n == 0 || !g.over() {
		return
	}
	dropped := false
	for i := range n {
		if sizes[i] > 0 && packets[i][0] == device.MessageTransportType {
			sizes[i] = 0
			dropped = true
		}
	}
	if dropped {
		g.drops.Add(1)
	}
}

// gatedBind is a conn.Bind whose receive functions pass the gate.
type gatedBind struct {
	conn.Bind
	gate *heapGate
}

func (b *gatedBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	gated := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		gated[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			b.gate.filter(packets, sizes, n)
			return n, err
		}
	}
	return gated, actual, nil
}
