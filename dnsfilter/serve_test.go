package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// serveLoopback serves f on fresh UDP and TCP sockets of 127.0.0.1 until
// the test ends, and returns their addresses.
func serveLoopback(t *testing.T, f *Filter) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String(), l.Addr().String()
}

// dialFrom opens a TCP connection to addr from the local address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// askTCP sends one question on c and reads the reply.
func askTCP(c net.Conn, name string) (*dns.Msg, error) {
	r := new(dns.Msg)
	r.SetQuestion(dns.Fqdn(name), dns.TypeA)
	dc := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := dc.WriteMsg(r); err != nil {
		return nil, err
	}
	return dc.ReadMsg()
}

// closedByServer reports whether the server closed c (EOF or reset) within
// five seconds.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestTCPPerIdentity: alice opens fifty idle connections; she keeps three,
// the rest are closed at once, and bob still gets answers over TCP. An
// idle connection is closed after TCPIdleTimeout, which frees its slot.
func TestTCPPerIdentity(t *testing.T) {
	v := testView()
	v.ids[0].Address = netip.MustParseAddr("127.0.0.1")
	v.ids[1].Address = netip.MustParseAddr("127.0.0.2")
	f, _, _ := newTestFilter(t, Config{TCPPerIdentity: 3, TCPIdleTimeout: 300 * time.Millisecond, Timeout: 10 * time.Second}, v)
	_, addr := serveLoopback(t, f)

	var conns []net.Conn
	for range 50 {
		conns = append(conns, dialFrom(t, "127.0.0.1", addr))
	}
	// Accepted in order: the first three are kept, the others closed.
	for i, c := range conns[3:] {
		if !closedByServer(c) {
			t.Fatalf("alice's connection %d beyond her 3 not closed", i+4)
		}
	}
	if m, err := askTCP(dialFrom(t, "127.0.0.2", addr), "pacs.nhs.internal"); err != nil || m.Rcode != dns.RcodeNameError {
		t.Fatalf("bob over TCP while alice holds her connections: %v %v", m, err)
	}
	for i, c := range conns[:3] {
		if m, err := askTCP(c, "pacs.nhs.internal"); err != nil || len(m.Answer) != 1 {
			t.Fatalf("alice's kept connection %d: %v %v", i+1, m, err)
		}
	}
	// Idle after a query: closed after TCPIdleTimeout, and the slots are free.
	start := time.Now()
	for i, c := range conns[:3] {
		if !closedByServer(c) {
			t.Fatalf("alice's idle connection %d not closed", i+1)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("idle connections closed after %v", d)
	}
	if m, err := askTCP(dialFrom(t, "127.0.0.1", addr), "pacs.nhs.internal"); err != nil || len(m.Answer) != 1 {
		t.Errorf("alice after her idle connections closed: %v %v", m, err)
	}
	// An unknown source is not served at all.
	if !closedByServer(dialFrom(t, "127.0.0.3", addr)) {
		t.Error("connection from an unknown source kept")
	}
}

// TestMalformedQueries sends broken messages over UDP and TCP from a known
// identity: each gets FORMERR, REFUSED or NOTIMP, or no answer at all, and
// the server answers a good query on the same socket afterwards.
func TestMalformedQueries(t *testing.T) {
	v := testView()
	v.ids[0].Address = netip.MustParseAddr("127.0.0.1")
	f, _, _ := newTestFilter(t, Config{}, v)
	udpAddr, tcpAddr := serveLoopback(t, f)

	hdr := func(id, flags, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		for i, x := range []uint16{id, flags, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	question := func(name []byte, qtype uint16) []byte {
		return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(name, qtype), dns.ClassINET)
	}
	pacs := []byte("\x04pacs\x03nhs\x08internal\x00")
	giant := make([]byte, 0, 300)
	for len(giant) < 250 { // labels of 63, more than 255 bytes in all
		giant = append(giant, 63)
		giant = append(giant, make([]byte, 63)...)
		for i := len(giant) - 63; i < len(giant); i++ {
			giant[i] = 'a'
		}
	}
	giant = append(giant, 0)
	opt := func(size uint16) []byte { // an OPT RR at the root
		b := []byte{0}
		b = binary.BigEndian.AppendUint16(b, dns.TypeOPT)
		b = binary.BigEndian.AppendUint16(b, size)
		return append(b, 0, 0, 0, 0, 0, 0)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	const rd = 0x0100
	for _, tc := range []struct {
		name string
		wire []byte
		want []int // acceptable rcodes; nil: must not be answered
	}{
		{"empty", nil, nil},
		{"truncated header", hdr(1, rd, 1, 0, 0, 0)[:7], nil},
		{"header only, claims a question", hdr(2, rd, 1, 0, 0, 0), []int{dns.RcodeFormatError}},
		{"truncated question", cat(hdr(3, rd, 1, 0, 0, 0), pacs[:6]), []int{dns.RcodeFormatError}},
		{"compression loop", cat(hdr(4, rd, 1, 0, 0, 0), []byte{0xc0, 12}, []byte{0, 1, 0, 1}), []int{dns.RcodeFormatError}},
		{"pointer forward", cat(hdr(5, rd, 1, 0, 0, 0), []byte{0xc0, 40}, []byte{0, 1, 0, 1}), []int{dns.RcodeFormatError}},
		{"zero questions", hdr(6, rd, 0, 0, 0, 0), []int{dns.RcodeFormatError}},
		{"three questions", cat(hdr(7, rd, 3, 0, 0, 0), question(pacs, dns.TypeA), question(pacs, dns.TypeA), question(pacs, dns.TypeAAAA)), []int{dns.RcodeFormatError}},
		{"giant name", cat(hdr(8, rd, 1, 0, 0, 0), question(giant, dns.TypeA)), []int{dns.RcodeFormatError}},
		{"label type 0x40", cat(hdr(9, rd, 1, 0, 0, 0), question([]byte{0x41, 'a', 0}, dns.TypeA)), []int{dns.RcodeFormatError}},
		{"EDNS 65535", cat(hdr(10, rd, 1, 0, 0, 1), question(pacs, dns.TypeA), opt(65535)), []int{dns.RcodeSuccess}},
		{"EDNS 0", cat(hdr(11, rd, 1, 0, 0, 1), question(pacs, dns.TypeA), opt(0)), []int{dns.RcodeSuccess}},
		{"two OPTs", cat(hdr(12, rd, 1, 0, 0, 2), question(pacs, dns.TypeA), opt(4096), opt(4096)), []int{dns.RcodeSuccess, dns.RcodeFormatError}},
		{"update opcode", cat(hdr(13, 5<<11, 1, 0, 0, 0), question(pacs, dns.TypeSOA)), []int{dns.RcodeNotImplemented}},
		{"trailing garbage", cat(hdr(14, rd, 1, 0, 0, 0), question(pacs, dns.TypeA), []byte{1, 2, 3}), []int{dns.RcodeSuccess, dns.RcodeFormatError}},
		{"answers in a query", cat(hdr(15, rd, 1, 5, 0, 0), question(pacs, dns.TypeA)), []int{dns.RcodeFormatError}},
		{"a response", cat(hdr(16, 0x8000, 1, 0, 0, 0), question(pacs, dns.TypeA)), nil},
		{"class CHAOS", cat(hdr(17, rd, 1, 0, 0, 0), pacs, []byte{0, 16, 0, 3}), []int{dns.RcodeRefused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := malformedUDP(t, udpAddr, tc.wire, tc.want != nil)
			checkMalformed(t, "udp", got, tc.want)
			got = malformedTCP(t, tcpAddr, tc.wire)
			checkMalformed(t, "tcp", got, tc.want)
		})
	}
}

func checkMalformed(t *testing.T, net string, got *dns.Msg, want []int) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s: answered %s", net, dns.RcodeToString[got.Rcode])
		}
		return
	}
	if got == nil {
		t.Errorf("%s: no answer, want %v", net, want)
		return
	}
	for _, w := range want {
		if got.Rcode == w {
			return
		}
	}
	t.Errorf("%s: rcode %s, want one of %v", net, dns.RcodeToString[got.Rcode], want)
}

// goodQuery is the query sent after a malformed one, to see the server
// still answers.
func goodQuery() []byte {
	r := new(dns.Msg)
	r.SetQuestion("pacs.nhs.internal.", dns.TypeA)
	r.Id = 0xbeef
	b, _ := r.Pack()
	return b
}

// malformedUDP sends wire then a good query from one socket, and returns
// the reply to wire, or nil when only the good query was answered. Each
// datagram is served in its own goroutine, so the replies may come in any
// order: when a reply is expected it is waited for; when none is, a reply
// still counts if it comes within a short grace after the good one.
func malformedUDP(t *testing.T, addr string, wire []byte, expectReply bool) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(goodQuery()); err != nil {
		t.Fatal(err)
	}
	var reply *dns.Msg
	good := false
	deadline := time.Now().Add(5 * time.Second)
	for !good || reply == nil {
		c.SetReadDeadline(deadline)
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			if good && errors.Is(err, os.ErrDeadlineExceeded) {
				return reply
			}
			t.Fatalf("reading replies: %v (good query answered: %v)", err, good)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("reply does not unpack: %v", err)
		}
		if m.Id == 0xbeef && len(m.Question) == 1 && m.Question[0].Name == "pacs.nhs.internal." {
			good = true
			if !expectReply {
				deadline = time.Now().Add(100 * time.Millisecond)
			}
			continue
		}
		reply = m
	}
	return reply
}

// malformedTCP sends wire as one TCP message and returns the reply, or
// nil when the server closed the connection or sent nothing; then a good
// query on a new connection must be answered.
func malformedTCP(t *testing.T, addr string, wire []byte) *dns.Msg {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(wire)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	var reply *dns.Msg
	if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(goodQuery())))); err == nil {
		c.Write(goodQuery())
	}
	dc := &dns.Conn{Conn: c}
	for {
		m, err := dc.ReadMsg()
		if err != nil {
			if errors.Is(err, io.EOF) || !errors.Is(err, os.ErrDeadlineExceeded) {
				break // closed: the server drops a connection that sends crap
			}
			t.Fatalf("reading replies: %v", err)
		}
		if m.Id == 0xbeef {
			break
		}
		reply = m
	}
	if m, err := askTCP(dialFrom(t, "127.0.0.1", addr), "pacs.nhs.internal"); err != nil || len(m.Answer) != 1 {
		t.Fatalf("good query after the malformed one: %v %v", m, err)
	}
	return reply
}
