package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/wardgate/wardgate/gateway"
)

// quarantinedNow asks the gateway that gateway.toml file describes, over
// its admin socket, whether identity is quarantined now: the gateway is
// where quarantine lives (its state directory, and the records learnt from
// other sites), not the policy. A gateway.toml without [admin] socket
// gives no answer; a gateway that does not answer gets a note on stderr,
// and explain then answers from the policy alone.
func quarantinedNow(file, identity string, stderr io.Writer) bool {
	empty := ""
	f := &adminFlags{config: &file, socket: &empty}
	sock, err := f.socketPath()
	if err != nil {
		return false
	}
	var list []gateway.QuarantineEntry
	if _, err := newAdminClient(sock).get("/v1/quarantine", &list); err != nil {
		fmt.Fprintf(stderr, "note: quarantine not checked, the gateway did not answer (%v); --quarantined explains as if %s were\n", err, identity)
		return false
	}
	return slices.ContainsFunc(list, func(e gateway.QuarantineEntry) bool { return e.Identity == identity })
}
