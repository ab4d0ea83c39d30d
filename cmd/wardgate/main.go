// Command wardgate is the userspace segmentation gateway's CLI: each
// subcommand is a file that parses its flags, calls a package and formats
// the result.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand: run gets the arguments after its first word
// and returns the process exit code. The `peer` subcommands are entries of
// their own (name "peer add", ...) that share one run, so that each has its
// own usage line and help.
type command struct {
	name     string // "run", "peer add"
	synopsis string // the arguments after the name
	summary  string
	run      func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	const admin = " (-c gateway.toml or --socket PATH)"
	return []command{
		{"run", "-c gateway.toml", "run the gateway until SIGINT/SIGTERM; SIGHUP reloads", cmdRun},
		{"check", "-c FILE", "validate a gateway.toml or policy.toml and run its [[test]]s", cmdCheck},
		{"explain", "-c FILE --from ID --to SVC[:PORT[/PROTO]] [--at RFC3339] [--quarantined] [--json]", "the decision, the rule that made it, and why", cmdExplain},
		{"diff", "OLD NEW [--at RFC3339] [--json]", "access gained and lost between two policy files, per identity and service", cmdDiff},
		{"services", "-c FILE [--json]", "every service of the policy: VIP, site, ports, DNS names", cmdServices},
		{"status", "-c gateway.toml [--json]", "the running gateway: policy, enforce mode, peers, site links, services" + admin, cmdStatus},
		{"flows", "-c gateway.toml [--json]", "the running gateway's live flows" + admin, cmdFlows},
		{"reload", "-c gateway.toml", "reload gateway.toml and policy.toml" + admin, cmdReload},
		{"quarantine", "-c gateway.toml NAME --reason TEXT [--json]", "quarantine an identity at once: new flows denied, live ones ended, DNS limited to [quarantine] allow" + admin, cmdQuarantine},
		{"quarantine list", "-c gateway.toml [--json]", "who is quarantined, since when, by whom, why" + admin, cmdQuarantine},
		{"release", "-c gateway.toml NAME [--reason TEXT] [--json]", "end an identity's quarantine" + admin, cmdRelease},
		{"peer add", "-c FILE NAME --groups a,b [--site S] [--pubkey KEY] [-o FILE [--force]] [--qr]", "enrol a client: add it to the policy, write its wg-quick config", cmdPeer},
		{"peer rotate", "-c FILE NAME [--pubkey KEY] [-o FILE [--force]] [--qr]", "give an identity a new key, write its new wg-quick config", cmdPeer},
		{"peer remove", "-c FILE NAME", "remove an identity from the policy (its address is retired)", cmdPeer},
		{"peer list", "-c FILE", "list the policy's identities", cmdPeer},
		{"suggest", "-c FILE [--group-threshold 0.5] [--write FILE] AUDIT.jsonl...", "propose the rules that would allow what audit logs show denied (from audit mode)", cmdSuggest},
		{"grant", "-c gateway.toml --from ID|group:NAME --to SVC[:PORT[/PROTO]] --for 2h --reason TEXT", "add a time-limited allow rule and reload the gateway", cmdGrant},
		{"grant list", "-c FILE [--json]", "the grants in force and their remaining time", cmdGrant},
		{"grant prune", "-c gateway.toml", "remove the rules whose expiry has come, and reload", cmdGrant},
		{"demo", "[--verbose]", "the whole story in one process: two sites, clients, services, no root", cmdDemo},
		{"version", "", "print version and build info", cmdVersion},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		return help(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if firstWord(c.name) == args[0] {
			if wantsHelp(args[1:]) {
				return help(args, stdout, stderr)
			}
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "wardgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// wantsHelp reports whether -h or --help is among the flags (before "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// help prints, on stdout, the usage of the command that words name
// ("peer", "peer add", "status") and, for a single command, its flags, and
// exits 0. The flags come from the command's own flag set: run with only
// -h, a command's flag parsing stops at once with flag.ErrHelp, having
// printed them (see newFlags) and done nothing else.
func help(words []string, stdout, stderr io.Writer) int {
	var match []command
	for _, c := range commands() {
		if firstWord(c.name) == words[0] {
			match = append(match, c)
		}
	}
	if len(match) > 1 && len(words) > 1 {
		for _, c := range match {
			if c.name == words[0]+" "+words[1] {
				match = []command{c}
				break
			}
		}
	}
	if len(match) == 0 {
		fmt.Fprintf(stderr, "wardgate help: unknown command %q\n\n", words[0])
		usage(stderr)
		return 2
	}
	fmt.Fprintln(stdout, "usage:")
	for _, c := range match {
		printCommand(stdout, c)
	}
	// The flags of the one command, or of the bare one among its
	// subcommands (`grant` beside `grant list`).
	for _, c := range match {
		if len(match) == 1 || c.name == words[0] {
			fmt.Fprintln(stdout)
			sub := append(strings.Fields(c.name)[1:], "-h")
			c.run(sub, io.Discard, stdout)
			break
		}
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wardgate COMMAND [flags]   (wardgate COMMAND --help: its flags)")
	fmt.Fprintln(w)
	for _, c := range commands() {
		printCommand(w, c)
	}
}

func printCommand(w io.Writer, c command) {
	fmt.Fprintf(w, "  wardgate %s\n", strings.TrimSpace(c.name+" "+c.synopsis))
	fmt.Fprintf(w, "      %s\n", c.summary)
}

func firstWord(s string) string { return strings.Fields(s)[0] }
