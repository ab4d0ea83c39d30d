package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/gateway"
)

// cmdQuarantine is `wardgate quarantine NAME --reason TEXT` and
// `wardgate quarantine list`, through the running gateway's admin socket.
func cmdQuarantine(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "list" {
		return quarantineList(args[1:], stdout, stderr)
	}
	fs, f := newAdminFlags("quarantine", stderr)
	reason := fs.String("reason", "", "why (the EDR alert, the ticket); required")
	name, code := parseNamed(fs, args, stderr, "quarantine")
	if code != 0 {
		return code
	}
	if strings.TrimSpace(*reason) == "" {
		fmt.Fprintln(stderr, "wardgate quarantine: --reason is required (the EDR alert, the ticket): it goes to the audit log and to `wardgate quarantine list`")
		return 1
	}
	c, code := adminClientFor(f, stderr, "quarantine")
	if c == nil {
		return code
	}
	var res gateway.QuarantineResult
	body, err := c.sendJSON(http.MethodPost, "/v1/quarantine", gateway.QuarantineRequest{Identity: name, Reason: *reason}, &res)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate quarantine: %v\n", err)
		return 1
	}
	if *f.json {
		stdout.Write(body)
		return 0
	}
	if res.Already {
		fmt.Fprintf(stdout, "%s was already quarantined since %s by %s: %s\n", res.Identity, res.Since.Local().Format(time.DateTime), res.By, res.Reason)
		return 0
	}
	fmt.Fprintf(stdout, "quarantined %s: new flows denied, live flows ended, DNS limited to [quarantine] allow\n", res.Identity)
	return 0
}

// cmdRelease is `wardgate release NAME [--reason TEXT]`.
func cmdRelease(args []string, stdout, stderr io.Writer) int {
	fs, f := newAdminFlags("release", stderr)
	reason := fs.String("reason", "", "why (optional)")
	name, code := parseNamed(fs, args, stderr, "release")
	if code != 0 {
		return code
	}
	c, code := adminClientFor(f, stderr, "release")
	if c == nil {
		return code
	}
	var res gateway.QuarantineResult
	body, err := c.sendJSON(http.MethodDelete, "/v1/quarantine/"+url.PathEscape(name), gateway.QuarantineRequest{Reason: *reason}, &res)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate release: %v\n", err)
		return 1
	}
	if *f.json {
		stdout.Write(body)
		return 0
	}
	fmt.Fprintf(stdout, "released %s from quarantine\n", res.Identity)
	return 0
}

// quarantineList prints who is quarantined, since when, by whom and why.
func quarantineList(args []string, stdout, stderr io.Writer) int {
	c, f, code := setupAdmin("quarantine list", args, stderr)
	if c == nil {
		return code
	}
	var list []gateway.QuarantineEntry
	raw, err := c.get("/v1/quarantine", &list)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate quarantine list: %v\n", err)
		return 1
	}
	if *f.json {
		stdout.Write(raw)
		return 0
	}
	printQuarantined(stdout, "", list, time.Now())
	return 0
}

func printQuarantined(w io.Writer, indent string, list []gateway.QuarantineEntry, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, indent+"nobody is quarantined")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, indent+"IDENTITY\tSINCE\tBY\tAT SITE\tREASON")
	for _, e := range list {
		name := e.Identity
		if !e.InPolicy {
			name += " (not in the policy)"
		}
		fmt.Fprintf(tw, "%s%s\t%s (%s)\t%s\t%s\t%s\n", indent, name, e.Since.Local().Format("2006-01-02 15:04:05 MST"), ago(now, e.Since), e.By, e.Site, e.Reason)
	}
	tw.Flush()
}

// parseNamed parses flags around one NAME argument (flags may come before
// or after it).
func parseNamed(fs *flag.FlagSet, args []string, stderr io.Writer, cmd string) (string, int) {
	if err := fs.Parse(args); err != nil {
		return "", 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "wardgate %s: which identity? (wardgate %s NAME)\n", cmd, cmd)
		return "", 2
	}
	name := rest[0]
	if err := fs.Parse(rest[1:]); err != nil {
		return "", 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wardgate %s: unexpected argument %q\n", cmd, fs.Args()[0])
		return "", 2
	}
	return name, 0
}

// adminClientFor finds the admin socket for parsed flags.
func adminClientFor(f *adminFlags, stderr io.Writer, cmd string) (*adminClient, int) {
	sock, err := f.socketPath()
	if err != nil {
		fmt.Fprintf(stderr, "wardgate %s: %v\n", cmd, err)
		return nil, 1
	}
	return newAdminClient(sock), 0
}

// sendJSON sends body as JSON and decodes a 200 answer into v; any other
// answer is an error carrying the gateway's message. The raw answer is
// returned for --json.
func (c *adminClient) sendJSON(method, path string, body, v any) ([]byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, "http://wardgate"+path, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the gateway's admin socket %s: %w (is `wardgate run` running with this [admin] socket, and may you use the socket?)", c.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("admin socket %s: %s %s: %d %s", c.socket, method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("admin socket %s: %s %s: %w", c.socket, method, path, err)
	}
	return raw, nil
}
