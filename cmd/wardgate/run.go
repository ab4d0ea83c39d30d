package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/wardgate/wardgate/gateway"
)

// cmdRun runs the gateway until SIGINT or SIGTERM; SIGHUP reloads
// gateway.toml and policy.toml (a bad file changes nothing).
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	file := fs.String("c", "", "gateway.toml")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "wardgate run: -c gateway.toml is required")
		return 2
	}
	cfg, err := gateway.LoadConfig(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	setMemoryLimit(cfg.Limits.MemoryMiB)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	g, err := gateway.Start(cfg, gateway.Options{Version: version})
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if _, err := g.Reload(); err != nil {
				printErr(stderr, err)
			}
			continue
		}
		break
	}
	if err := g.Close(); err != nil {
		fmt.Fprintf(stderr, "wardgate: stop: %v\n", err)
		return 1
	}
	return 0
}

// setMemoryLimit gives the Go runtime a soft memory limit under the
// gateway's heap budget ([limits] memory_mib), unless GOMEMLIMIT sets one:
// the collector then works harder as the heap nears the budget, so that
// garbage not yet collected does not make the heap gate drop packets
// (overlay/heapgate.go). This process runs one gateway; tests and the
// demo, which run several, do not set it.
func setMemoryLimit(budgetMiB int) {
	if os.Getenv("GOMEMLIMIT") != "" || budgetMiB <= 0 {
		return
	}
	debug.SetMemoryLimit(int64(budgetMiB) << 20 * 9 / 10)
}
