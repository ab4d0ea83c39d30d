package gateway

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSpliceHalfClose: bytes are counted each way, and one side's FIN
// reaches the other while the opposite direction carries on.
func TestSpliceHalfClose(t *testing.T) {
	client, gwClient := tcpPair(t)
	gwBackend, backend := tcpPair(t)
	var in, out atomic.Int64
	idle := newIdleTimer(time.Minute, func() {})
	defer idle.stop()
	done := make(chan error, 1)
	go func() { done <- spliceTCP(gwClient, gwBackend, &in, &out, idle) }()

	client.Write([]byte("request"))
	client.CloseWrite() // the client is done sending
	got, err := io.ReadAll(backend)
	if err != nil || string(got) != "request" {
		t.Fatalf("backend read %q, %v: want the request, then EOF", got, err)
	}
	backend.Write([]byte("a long answer")) // the other direction still works
	backend.CloseWrite()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "a long answer" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("splice: %v", err)
	}
	if in.Load() != 7 || out.Load() != 13 {
		t.Fatalf("counted %d in, %d out; want 7 and 13", in.Load(), out.Load())
	}
}

// TestIdleTimer: the timer fires only after d without activity; activity
// pushes it back without resetting a timer per read.
func TestIdleTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fired := make(chan time.Time, 1)
		start := time.Now()
		it := newIdleTimer(10*time.Second, func() { fired <- time.Now() })
		defer it.stop()
		time.Sleep(7 * time.Second)
		it.touch() // activity at 7 s: the flow lives until 17 s
		time.Sleep(9 * time.Second)
		synctest.Wait()
		select {
		case <-fired:
			t.Fatal("fired although the flow was active 9 s ago")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case at := <-fired:
			if d := at.Sub(start); d != 17*time.Second {
				t.Fatalf("fired at %v, want 17s", d)
			}
		default:
			t.Fatal("did not fire 10 s after the last activity")
		}
	})
}
