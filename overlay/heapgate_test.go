package overlay

import (
	"runtime"
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

// batch is a received batch: a handshake initiation, two transport data
// packets, a cookie reply.
func batch() ([][]byte, []int) {
	kinds := []byte{device.MessageInitiationType, device.MessageTransportType, device.MessageTransportType, device.MessageCookieReplyType}
	packets := make([][]byte, len(kinds))
	sizes := make([]int, len(kinds))
	for i, k := range kinds {
		packets[i] = make([]byte, 64)
		packets[i][0] = k
		sizes[i] = 64
	}
	return packets, sizes
}

// TestHeapGate: under its budget the gate passes a batch whole; over it,
// it drops the batch's data packets and keeps its handshake messages, and
// once the memory that filled it is garbage, it passes everything again
// (it starts the collection itself).
func TestHeapGate(t *testing.T) {
	runtime.GC()
	g := newHeapGate(newHeapGate(0).heap() + 64<<20)
	packets, sizes := batch()
	g.filter(packets, sizes, len(sizes))
	if sizes[1] == 0 || sizes[2] == 0 || g.drops.Load() != 0 {
		t.Fatalf("the gate dropped under its budget (heap %d MB, budget %d MB): sizes %v", g.heap()>>20, g.budget>>20, sizes)
	}

	hold := make([][]byte, 0, 128)
	for range 128 {
		hold = append(hold, make([]byte, 1<<20)) // 128 MB held
	}
	packets, sizes = batch()
	g.filter(packets, sizes, len(sizes))
	if sizes[0] == 0 || sizes[3] == 0 {
		t.Errorf("over its budget the gate dropped handshake messages: sizes %v", sizes)
	}
	if sizes[1] != 0 || sizes[2] != 0 || g.drops.Load() != 1 {
		t.Errorf("over its budget the gate let data packets through: sizes %v, drops %d", sizes, g.drops.Load())
	}
	hold[0][0] = 1
	hold = nil
	runtime.GC()
	packets, sizes = batch()
	g.filter(packets, sizes, len(sizes))
	if sizes[1] == 0 || sizes[2] == 0 {
		t.Errorf("the gate still drops once the memory is garbage: sizes %v", sizes)
	}
}

// BenchmarkHeapGateOpen is what every received batch pays under the
// budget.
func BenchmarkHeapGateOpen(b *testing.B) {
	g := newHeapGate(1 << 40)
	packets, sizes := batch()
	for b.Loop() {
		g.filter(packets, sizes, len(sizes))
	}
}
