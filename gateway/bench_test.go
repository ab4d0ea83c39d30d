package gateway

import (
	"io"
	"testing"

	"github.com/wardgate/wardgate/overlay/memnet"
)

// BenchmarkNewConnection opens, uses and closes one TCP connection per
// iteration from a userspace client through a gateway to a loopback
// backend: decision, backend dial, handshake, a small exchange, audit
// lines. The client's own netstack shares the CPU, so compare runs with
// each other (benchstat), not with other tools.
func BenchmarkNewConnection(b *testing.B) {
	be := startTestBackends(b)
	gwKey, aliceKey, bobKey := newTestKey(b), newTestKey(b), newTestKey(b)
	pol := sprintfPolicy(gwKey, aliceKey, bobKey, be)
	tg := startTestGateway(b, memnet.NewSwitch(), gwKey, "leeds", pol, "[log]\naudit = \"audit.log\"\n")
	alice := tg.client(b, aliceKey, "100.80.1.10")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := dialVIP(alice, "100.81.0.10", be.echo.Port())
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("x"))
		c.(interface{ CloseWrite() error }).CloseWrite()
		io.ReadAll(c)
		c.Close()
	}
}
