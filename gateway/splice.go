package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// copyBufSize is the splice buffer: large enough to move a TCP window's
// worth per syscall, pooled so idle flows hold no buffer at all.
const copyBufSize = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// idleTimer ends a flow when neither direction moved data for d. Activity
// is a timestamp written on every read; the timer re-arms itself for the
// remaining time instead of being reset per read, which keeps the hot path
// to one atomic store.
type idleTimer struct {
	d    time.Duration
	last atomic.Int64 // unix nanos of the last activity
	t    *time.Timer
}

func newIdleTimer(d time.Duration, expire func()) *idleTimer {
	it := &idleTimer{d: d}
	it.touch()
	it.t = time.AfterFunc(d, func() {
		if rest := it.d - time.Duration(time.Now().UnixNano()-it.last.Load()); rest > 0 {
			it.t.Reset(rest)
			return
		}
		expire()
	})
	return it
}

func (it *idleTimer) touch() { it.last.Store(time.Now().UnixNano()) }
func (it *idleTimer) stop()  { it.t.Stop() }

// closeWriter is a conn whose write half can be closed alone (TCP FIN).
type closeWriter interface{ CloseWrite() error }

// spliceTCP copies both ways until both directions ended, propagating
// half-close: when one side stops sending, the other side's write half is
// closed, and the other direction carries on. It returns the first error
// that was not a clean end of stream.
func spliceTCP(client, backend net.Conn, in, out *atomic.Int64, idle *idleTimer) error {
	errc := make(chan error, 2)
	go func() { errc <- copyHalf(backend, client, in, idle) }()
	go func() { errc <- copyHalf(client, backend, out, idle) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			// A broken direction ends the flow: unblock the other one.
			client.Close()
			backend.Close()
		}
	}
	return first
}

// copyHalf copies src to dst, counting bytes, then closes dst's write half.
// It borrows a buffer only for each read that has data waiting: an idle
// flow (thousands of them, a slowloris) holds no buffer at all.
func copyHalf(dst, src net.Conn, n *atomic.Int64, idle *idleTimer) error {
	for {
		if err := waitReadable(src); err != nil {
			return err
		}
		bp := copyBufs.Get().(*[]byte)
		nr, rerr := src.Read(*bp)
		var werr error
		if nr > 0 {
			idle.touch()
			var nw int
			nw, werr = dst.Write((*bp)[:nr])
			n.Add(int64(nw))
		}
		copyBufs.Put(bp)
		if werr != nil {
			return werr
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := dst.(closeWriter); ok {
					cw.CloseWrite()
				}
				return nil
			}
			return rerr
		}
	}
}

// waitReadable blocks until a Read on c would find data (or an end),
// without a buffer: overlay connections wait on their stack endpoint, host
// sockets on the poller. A conn that can do neither returns at once, and
// its Read then waits holding a buffer.
func waitReadable(c net.Conn) error {
	switch sc := c.(type) {
	case interface{ WaitReadable() error }:
		return sc.WaitReadable()
	case syscall.Conn:
		rc, err := sc.SyscallConn()
		if err != nil {
			return nil
		}
		// Ready is what a Read would not wait for: data, the end, an
		// error. MSG_PEEK looks without taking; only "would block" makes
		// the runtime park the goroutine until the poller says readable.
		// A pending socket error (a reset) is taken by the peek, and the
		// Read after it would see a clean end: it is returned here, as
		// the Read would have.
		var peek [1]byte
		var sockErr error
		err = rc.Read(func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN {
				return false
			}
			sockErr = err
			return true
		})
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		if sockErr != nil && sockErr != syscall.EINTR {
			return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", sockErr)}
		}
		return nil // a closed socket: the Read reports it
	}
	return nil
}
