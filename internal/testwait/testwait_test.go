package testwait

import (
	"runtime"
	"testing"
	"time"
)

func TestUntilAndRecv(t *testing.T) {
	n := 0
	Until(t, time.Second, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times", n)
	}
	ch := make(chan int, 1)
	ch <- 7
	if got := Recv(t, ch, "a value"); got != 7 {
		t.Fatalf("got %d", got)
	}
}

func TestGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { <-stop; close(done) }()
	go func() { time.Sleep(50 * time.Millisecond); close(stop) }() // ends on its own, a little later
	Goroutines(t, 5*time.Second, base)
	<-done
}
