package overlay

import (
	"runtime"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
)

// TestHeapGate: the gate lets receives through under its budget, holds
// them while the heap is over it, and lets them go once the memory that
// filled it is garbage (the gate collects it itself).
func TestHeapGate(t *testing.T) {
	g := newHeapGate(heapAfterCollection() + 64<<20)
	g.wait() // under the budget: returns at once
	if g.waits.Load() != 0 {
		t.Fatalf("the gate closed under its budget (heap %d MB, budget %d MB)", g.heap()>>20, g.budget>>20)
	}

	hold := make([][]byte, 0, 128)
	for range 128 {
		hold = append(hold, make([]byte, 1<<20)) // 128 MB held
	}
	released := make(chan struct{})
	go func() {
		g.wait()
		close(released)
	}()
	testwait.Until(t, 10*time.Second, "the gate to close over its budget", func() bool { return g.waits.Load() == 1 })
	select {
	case <-released:
		t.Fatal("the gate let a receive through while the heap was over its budget")
	default:
	}
	hold[0][0] = 1
	hold = nil
	testwait.Recv(t, released, "the gate to open once the memory is garbage")
	if !g.flooded.Load() {
		t.Error("a gate that closed should return memory to the OS on its next open pass")
	}
}

// heapAfterCollection is the heap's live objects now.
func heapAfterCollection() uint64 {
	runtime.GC()
	return newHeapGate(0).heap()
}

// BenchmarkHeapGateOpen is what every receive pays under the budget.
func BenchmarkHeapGateOpen(b *testing.B) {
	g := newHeapGate(1 << 40)
	for b.Loop() {
		g.wait()
	}
}
