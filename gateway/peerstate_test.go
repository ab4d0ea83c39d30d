package gateway

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// TestRestartKnocksOnClients: a gateway that stops saves its clients'
// endpoints; started again, it initiates the handshakes itself, so a
// client that sends nothing has a new session within a second or two and
// its next connection works at once.
func TestRestartKnocksOnClients(t *testing.T) {
	be := startTestBackends(t)
	keys := [3]testKey{newTestKey(t), newTestKey(t), newTestKey(t)}
	sw, dir := memnet.NewSwitch(), t.TempDir()
	text := sprintfPolicy(keys[0], keys[1], keys[2], be)
	const port = 51830
	first := startTestGatewayAt(t, sw, keys[0], "leeds", port, dir, text, "[limits]\ndrain = \"1s\"\n")
	alice := first.client(t, keys[1], "100.80.1.10")
	c, err := dialVIP(alice, "100.81.0.10", be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	before := alice.LastHandshake()
	first.gw.Close()
	if _, err := os.Stat(filepath.Join(dir, "state", peerStateFile)); err != nil {
		t.Fatalf("no peer state saved at stop: %v", err)
	}

	start := time.Now()
	second := startTestGatewayAt(t, sw, keys[0], "leeds", port, dir, text, "[limits]\ndrain = \"1s\"\n")
	testwait.Until(t, 3*time.Second, "the client's new session, started by the gateway", func() bool {
		return alice.LastHandshake().After(before)
	})
	t.Logf("client back %v after the gateway started", time.Since(start))
	c, err = dialVIP(alice, "100.81.0.10", be.echo.Port())
	if err != nil {
		t.Fatalf("first connection after the restart: %v", err)
	}
	c.Close()
	second.audit.waitEvent(t, map[string]any{"event": "peer.handshake", "identity": "alice"})
}
