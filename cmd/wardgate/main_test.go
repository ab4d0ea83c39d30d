package main

import (
	"os"
	"strings"
	"testing"
)

// Every command and subcommand answers -h and --help with its usage on
// stdout and exit 0, whatever else is on the line, and does nothing else.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		for _, args := range [][]string{
			append(words[:len(words):len(words)], "--help"),
			append(words[:len(words):len(words)], "-h"),
			append(append(words[:len(words):len(words)], "-c", "/nonexistent/gateway.toml", "NAME"), "-h"),
			append([]string{"help"}, words...),
		} {
			code, out, errOut := runCLI(args...)
			if code != 0 || errOut != "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "usage:\n  wardgate "+c.name) || !strings.Contains(out, c.summary) {
				t.Errorf("%q: no usage of %s:\n%s", args, c.name, out)
			}
			if hasFlags := c.name != "version"; hasFlags != strings.Contains(out, "flags:\n") {
				t.Errorf("%q: flags listed %v, want %v:\n%s", args, !hasFlags, hasFlags, out)
			}
		}
	}
	// `peer --help` lists the peer subcommands.
	code, out, _ := runCLI("peer", "--help")
	if code != 0 || !strings.Contains(out, "wardgate peer add") || !strings.Contains(out, "wardgate peer remove") || !strings.Contains(out, "wardgate peer list") {
		t.Errorf("peer --help: %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		if code, out, _ := runCLI(args...); code != 0 || !strings.Contains(out, "wardgate peer add") {
			t.Errorf("%q: %d\n%s", args, code, out)
		}
	}
	// A -h after "--" is an argument, not a request for help.
	if code, _, _ := runCLI("peer", "add", "-c", "x", "--", "-h"); code == 0 {
		t.Error(`"-- -h" was taken for help`)
	}
	if code, _, _ := runCLI(); code != 2 {
		t.Error("no command: want exit 2")
	}
	if code, _, _ := runCLI("help", "frobnicate"); code != 2 {
		t.Error("help for an unknown command: want exit 2")
	}
}

// TestDesignNamesEveryCommand: the command table of docs/design.md
// ("every contract in one place") has a row for each command.
func TestDesignNamesEveryCommand(t *testing.T) {
	text, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !strings.Contains(string(text), "\n| `wardgate "+c.name+" ") && !strings.Contains(string(text), "\n| `wardgate "+c.name+"`") {
			t.Errorf("docs/design.md has no row for wardgate %s", c.name)
		}
	}
}
