package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/wardgate/wardgate/gateway"
)

// cmdCheck validates a gateway.toml or policy.toml and runs the policy's
// [[test]]s. It runs in CI on config repositories without secrets, so a
// missing or too-open private key is a warning here (`run` refuses it).
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "wardgate check: -c FILE is required")
		return 2
	}
	cfg, pol, err := loadAny(*file)
	if err != nil {
		printErr(stderr, err)
		fmt.Fprintf(stderr, "%s: invalid\n", *file)
		return 1
	}
	warnings := 0
	if cfg != nil {
		if _, err := cfg.ReadPrivateKey(); err != nil {
			if errors.Is(err, gateway.ErrKeyTooOpen) || errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(stderr, "warning: %v (wardgate run refuses this)\n", err)
				warnings++
			} else {
				printErr(stderr, err)
				return 1
			}
		}
		if err := cfg.CheckKeyMatches(pol); err != nil {
			fmt.Fprintf(stderr, "warning: %v (wardgate run refuses this)\n", err)
			warnings++
		}
	}
	for _, w := range pol.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w.Error())
		warnings++
	}
	results := pol.RunTests()
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
			// The problem of a failed test says it all: where, the test,
			// what it expected and what it got.
			fmt.Fprintf(stderr, "FAIL: %s\n", r.Problem.Error())
		}
	}
	fmt.Fprintf(stdout, "%s: ", pol.File())
	fmt.Fprintf(stdout, "%d sites, %d identities, %d groups, %d services, %d rules; %d/%d tests passed",
		len(pol.Sites()), len(pol.Identities()), len(pol.Groups()), len(pol.Services()), len(pol.Rules()),
		len(results)-failed, len(results))
	if warnings > 0 {
		fmt.Fprintf(stdout, "; %s", plural(warnings, "warning", "warnings"))
	}
	fmt.Fprintf(stdout, "; policy %s\n", pol.Hash())
	if cfg != nil {
		mode := "enforcing"
		if cfg.Auditing() {
			mode = "AUDIT MODE (not enforcing)"
		}
		fmt.Fprintf(stdout, "%s: site %s, %s, %d listeners\n", cfg.File(), cfg.Site, mode, len(cfg.Listener))
	}
	if failed > 0 {
		return 1
	}
	return 0
}
