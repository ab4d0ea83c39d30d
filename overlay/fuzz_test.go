package overlay

import (
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/wardgate/wardgate/overlay/memnet"
)

// Seeds: an IPv4 echo request, an IPv6 echo request, an IPv4 TCP SYN and
// an IPv4 UDP datagram, as a peer would send them.
var packetSeeds = []string{
	"45000054000040004001000064500b0a64510014" + "0800f7ff00010001" + "68656c6c6f",
	"6000000000083a40fd000080000000000000000000000010fd000081000000000000000000000010" + "8000000000010001",
	"4500003c000040004006000064500b0a6451000a" + "d43101bb00000001000000005002ffff00000000",
	"4500002000004000401100006450010a64510014" + "d431003500000000" + "6869",
}

func FuzzEchoResponder(f *testing.F) {
	for _, s := range packetSeeds {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	e := &echoResponder{
		self:  netip.MustParseAddr("100.80.0.1"),
		allow: func(src, dst netip.Addr) bool { return true },
		reply: func(pkt []byte) {
			if len(pkt) < 20 {
				panic("short reply")
			}
		},
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		e.handle(pkt)
	})
}

// FuzzLinkWrite feeds arbitrary packets from a peer through the link into a
// real stack (GRO, IP, TCP, UDP, ICMP): nothing may panic.
func FuzzLinkWrite(f *testing.F) {
	for _, s := range packetSeeds {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	o, err := New(Config{
		Bind:    memnet.NewSwitch().BindAt(netip.MustParseAddrPort("10.0.0.1:51820")),
		Address: netip.MustParseAddr("100.80.0.1"),
		Handler: Handler{
			TCP: func(r *TCPRequest) { r.Reject() },
			UDP: func(src, dst netip.AddrPort) func(net.Conn) { return nil },
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	defer o.Close()
	tun := (*tunSide)(o.link)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		buf := make([]byte, 16+len(pkt))
		copy(buf[16:], pkt)
		tun.Write([][]byte{buf, buf}, 16)
	})
}
