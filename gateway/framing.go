package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// Framing on site-link streams. An HTTP/2 server ends its response stream
// only when its handler returns, so the response direction cannot
// half-close on its own; and UDP needs datagram boundaries. Both get the
// same small frame: a two-byte big-endian length, then that many bytes.
// On a TCP stream's response direction a zero-length frame is the end of
// the stream (the backend's FIN); on a datagram stream it is an empty
// datagram.

const maxFrame = 1<<16 - 1

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 2+maxFrame); return &b }}

// frameWriter writes frames to w; Close sends the end-of-stream frame and
// closes w when it can be closed.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// writeFrame writes p (at most maxFrame bytes) as one frame, in one write.
func (fw *frameWriter) writeFrame(p []byte) error {
	if len(p) > maxFrame {
		return errors.New("frame too large")
	}
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := (*bp)[:2+len(p)]
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(buf)
	return err
}

// Write sends p as stream data, in frames of at most maxFrame bytes.
func (fw *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxFrame)]
		if err := fw.writeFrame(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Close ends the stream: a zero-length frame, then w's own close.
func (fw *frameWriter) Close() error {
	err := fw.writeFrame(nil)
	if c, ok := fw.w.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// frameReader reads frames from r.
type frameReader struct {
	r      io.ReadCloser
	left   int // bytes of the current frame not yet read (stream mode)
	hdr    [2]byte
	sawEOF bool // the end-of-stream frame was read
}

// Read returns stream data; a zero-length frame is io.EOF.
func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.left == 0 {
		if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
			return 0, err
		}
		fr.left = int(binary.BigEndian.Uint16(fr.hdr[:]))
		if fr.left == 0 {
			fr.sawEOF = true
			return 0, io.EOF
		}
	}
	n, err := fr.r.Read(p[:min(len(p), fr.left)])
	fr.left -= n
	if err == io.EOF && fr.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// readFrame returns one whole frame as one datagram (truncated to p).
func (fr *frameReader) readFrame(p []byte) (int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(fr.hdr[:]))
	if n <= len(p) {
		return io.ReadFull(fr.r, p[:n])
	}
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return 0, err
	}
	_, err := io.CopyN(io.Discard, fr.r, int64(n-len(p)))
	return len(p), err
}

func (fr *frameReader) Close() error { return fr.r.Close() }

// datagramConn carries datagrams on a site-link stream, one frame each.
type datagramConn struct {
	*streamConn
	fw *frameWriter
	fr *frameReader
}

func newDatagramConn(s *streamConn) net.Conn {
	return &datagramConn{streamConn: s, fw: &frameWriter{w: s.w}, fr: &frameReader{r: s.r}}
}

func (d *datagramConn) Read(p []byte) (int, error) { return d.fr.readFrame(p) }

func (d *datagramConn) Write(p []byte) (int, error) {
	if err := d.fw.writeFrame(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
