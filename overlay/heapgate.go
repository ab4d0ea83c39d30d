package overlay

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
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
// heapGate bounds the heap there: before each receive, while the heap
// holds more than the budget, the receive goroutine waits (collecting
// garbage, as the pooled buffers of packets already processed are garbage
// only to the collector). The kernel's socket buffer then overflows and
// drops, as a NIC does under overload; the gateway works through what it
// holds and reads again. Under the budget a receive costs one read of the
// runtime's heap figure.
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
	flooded atomic.Bool // the gate closed since memory was last returned
	waits   atomic.Uint64
}

// heapGateGCEvery spaces the collections a closed gate asks for.
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

// wait returns when the heap is under the budget.
func (g *heapGate) wait() {
	h := g.heap()
	if h < g.budget {
		if h < g.budget/2 && g.flooded.CompareAndSwap(true, false) {
			go debug.FreeOSMemory()
		}
		return
	}
	g.flooded.Store(true)
	g.waits.Add(1)
	for g.heap() >= g.budget {
		now := time.Now().UnixNano()
		if last := g.lastGC.Load(); now-last >= int64(heapGateGCEvery) && g.lastGC.CompareAndSwap(last, now) {
			runtime.GC()
			continue
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedBind is a conn.Bind whose receive functions wait at the gate.
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
			b.gate.wait()
			return fn(packets, sizes, eps)
		}
	}
	return gated, actual, nil
}
