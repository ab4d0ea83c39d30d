package testnet

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestUDPEcho(t *testing.T) {
	addr := UDPEcho(t)
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("%q %v", buf[:n], err)
	}
}

func TestDNS(t *testing.T) {
	d := NewDNS(t, AnswerA("192.0.2.7", 60))
	q := new(dns.Msg)
	q.SetQuestion("x.example.", dns.TypeA)
	for _, network := range []string{"udp", "tcp"} {
		r, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(q, d.Addr)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
			t.Fatalf("%s: %v %v", network, r, err)
		}
	}
	if d.Queries.Load() != 2 || d.TCP.Load() != 1 {
		t.Errorf("queries %d, over TCP %d", d.Queries.Load(), d.TCP.Load())
	}
}
