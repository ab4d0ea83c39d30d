package testwait

import (
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
