package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
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

// TestSpliceBrokenDirectionEndsBoth: a backend that resets ends the flow:
// the splice returns the error and the client's connection is closed, not
// left half-open.
func TestSpliceBrokenDirectionEndsBoth(t *testing.T) {
	client, gwClient := tcpPair(t)
	gwBackend, backend := tcpPair(t)
	var in, out atomic.Int64
	idle := newIdleTimer(time.Minute, func() {})
	defer idle.stop()
	done := make(chan error, 1)
	go func() { done <- spliceTCP(gwClient, gwBackend, &in, &out, idle) }()

	backend.SetLinger(0) // close with a reset
	backend.Close()
	if err := testwait.Recv(t, done, "the splice to end"); err == nil {
		t.Fatal("splice returned no error after the backend reset")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read after the reset: %v; want the connection ended", err)
	}
}

// TestSpliceKeepsActiveFlowsAlive: bytes in either direction push the idle
// timer back; a flow quiet for its idle time is ended. Conns without a
// poller (net.Pipe, as overlay conns are to the splice) are copied too.
func TestSpliceKeepsActiveFlowsAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, gwClient := net.Pipe()
		gwBackend, backend := net.Pipe()
		var in, out atomic.Int64
		expired := make(chan time.Duration, 1)
		start := time.Now()
		idle := newIdleTimer(10*time.Second, func() {
			expired <- time.Since(start)
			gwClient.Close()
			gwBackend.Close()
		})
		defer idle.stop()
		done := make(chan error, 1)
		go func() { done <- spliceTCP(gwClient, gwBackend, &in, &out, idle) }()
		go io.Copy(io.Discard, backend)
		go io.Copy(io.Discard, client)

		for range 3 { // 6 s apart, under the idle time: alive at 18 s
			time.Sleep(6 * time.Second)
			client.Write([]byte("x"))
		}
		time.Sleep(6 * time.Second)
		backend.Write([]byte("y")) // the other direction counts too, at 24 s
		synctest.Wait()
		select {
		case d := <-expired:
			t.Fatalf("an active flow expired at %v", d)
		default:
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case d := <-expired:
			if d != 34*time.Second {
				t.Fatalf("expired at %v, want 34s (10 s after the last byte)", d)
			}
		default:
			t.Fatal("a quiet flow did not expire")
		}
		<-done
		client.Close()
		backend.Close()
		if in.Load() != 3 || out.Load() != 1 {
			t.Fatalf("counted %d in, %d out; want 3 and 1", in.Load(), out.Load())
		}
	})
}
