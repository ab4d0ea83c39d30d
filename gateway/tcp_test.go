package gateway

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// isSYNACK reports whether pkt is an IPv4 TCP SYN-ACK.
func isSYNACK(pkt []byte) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 6 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	return len(pkt) >= ihl+14 && pkt[ihl+13]&0x12 == 0x12
}

// TestHalfOpenHandshakeFreesTheBackend: a client that never completes its
// TCP handshake holds the backend connection the gateway dialed for it no
// longer than handshakeWait, and the identity's pending slot until then.
func TestHalfOpenHandshakeFreesTheBackend(t *testing.T) {
	defer func(d time.Duration) { handshakeWait = d }(handshakeWait)
	handshakeWait = 500 * time.Millisecond

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted, closed := make(chan struct{}, 4), make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			go func() { io.Copy(io.Discard, c); c.Close(); closed <- struct{}{} }()
		}
	}()
	be := startTestBackends(t)
	be.echo = ln.Addr().(*net.TCPAddr).AddrPort()
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	tg := startTestGateway(t, memnet.NewSwitch(), keys[0], "leeds", sprintfPolicy(keys[0], keys[1], keys[2], be), "[limits]\ndrain = \"1s\"\npending_per_identity = 1\n")

	scanner, err := wgclient.New(wgclient.Config{
		PrivateKey: keys[1].priv, Addresses: []netip.Addr{netip.MustParseAddr("100.80.1.10")},
		PeerPublicKey: tg.key.pub, PeerEndpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tg.port),
		Bind:    tg.sw.Bind(netip.MustParseAddr("127.0.0.2")),
		Inbound: func(pkt []byte) bool { return !isSYNACK(pkt) }, // never answers a SYN-ACK
	})
	if err != nil {
		t.Fatal(err)
	}
	defer scanner.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go scanner.DialContext(ctx, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("100.81.0.10"), be.echo.Port()).String())

	start := time.Now()
	testwait.Recv(t, accepted, "the backend dial")
	testwait.Recv(t, closed, "the backend connection closed")
	if d := time.Since(start); d > handshakeWait+2*time.Second {
		t.Errorf("the backend was held %v; want about %v", d, handshakeWait)
	}
	tg.audit.waitEvent(t, map[string]any{"event": "flow.end", "identity": "alice", "error": "the client did not complete its handshake"})

	// The pending slot (one, in this config) is free again.
	scanner.Close()
	alice := tg.client(t, keys[1], "100.80.1.10")
	c, err := dialVIP(alice, "100.81.0.10", be.echo.Port())
	if err != nil {
		t.Fatalf("a normal connection after the half-open one: %v", err)
	}
	c.Close()
}
