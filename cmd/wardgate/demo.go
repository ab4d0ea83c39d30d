package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardgate/wardgate/internal/demo"
)

// cmdDemo plays the in-process demo (internal/demo): two site gateways,
// WireGuard clients and services, no root, no setup. --verbose adds the
// audit JSON lines and the gateways' operational log on stderr.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	verbose := fs.Bool("verbose", false, "also print every audit line and the operational log on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wardgate demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var opts demo.Options
	if *verbose {
		opts.Audit, opts.Log = stderr, stderr
	}
	if err := demo.RunWith(ctx, stdout, opts); err != nil {
		fmt.Fprintf(stderr, "wardgate demo: %v\n", err)
		return 1
	}
	return 0
}
