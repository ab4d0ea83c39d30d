// Command wardgate is the userspace segmentation gateway's CLI: each
// subcommand is a file that parses its flags, calls a package and formats
// the result.
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code.
type command struct {
	name, usage string
	run         func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run -c gateway.toml                 run the gateway (SIGHUP reloads)", cmdRun},
		{"check", "check -c FILE                       validate a gateway.toml or policy.toml and run its [[test]]s", cmdCheck},
		{"explain", "explain -c FILE --from ID --to SVC[:PORT[/PROTO]] [--at RFC3339] [--json]", cmdExplain},
		{"status", "status -c gateway.toml [--json]     the running gateway: policy, enforce mode, peers, site links", cmdStatus},
		{"flows", "flows -c gateway.toml [--json]      the running gateway's live flows", cmdFlows},
		{"reload", "reload -c gateway.toml              reload gateway.toml and policy.toml (these three: -c or --socket PATH)", cmdReload},
		{"peer", "peer add -c FILE NAME --groups a,b  enrol a client, print its wg-quick config [--site S] [--pubkey KEY] [--qr]", cmdPeer},
		{"peer", "peer remove -c FILE NAME            remove an identity from the policy", cmdPeer},
		{"peer", "peer list -c FILE                   list the policy's identities", cmdPeer},
		{"demo", "demo [--verbose]                    the whole story in one process: two sites, clients, services, no root", cmdDemo},
		{"version", "version                             print version and build info", cmdVersion},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "wardgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wardgate COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  wardgate %s\n", c.usage)
	}
}
