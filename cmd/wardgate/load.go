package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/policy"
)

// isGatewayConfig tells a gateway.toml from a policy.toml: a policy has
// [overlay] and array tables; a gateway config names its policy.
func isGatewayConfig(path string) (bool, error) {
	var top map[string]any
	if _, err := toml.DecodeFile(path, &top); err != nil {
		return false, nil // let the real loader report the syntax error
	}
	_, hasPolicy := top["policy"]
	_, hasSource := top["policy_source"]
	_, hasOverlay := top["overlay"]
	return (hasPolicy || hasSource) && !hasOverlay, nil
}

// loadAny loads FILE as either kind. cfg is nil for a policy.toml.
func loadAny(path string) (*gateway.Config, *policy.Policy, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, err
	}
	gw, _ := isGatewayConfig(path)
	if !gw {
		p, err := policy.Load(path)
		return nil, p, err
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	if cfg.FollowsRepo() {
		// The branch head, as the gateway would run it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, _, err := cfg.FetchPolicy(ctx)
		return cfg, p, err
	}
	p, err := cfg.LoadPolicy()
	return cfg, p, err
}

// printErr prints an error; a LoadError prints one problem per line.
func printErr(w io.Writer, err error) {
	var le *policy.LoadError
	if errors.As(err, &le) {
		for _, p := range le.Problems {
			fmt.Fprintf(w, "error: %s\n", p.Error())
		}
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}

// newFlags returns a flag set that reports errors on stderr and does not
// exit the process. Its usage is the list of its flags: the command's
// synopsis is printed by help (main.go).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wardgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "flags:")
			fs.PrintDefaults()
		}
	}
	return fs
}
