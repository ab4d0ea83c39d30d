package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wardgate/wardgate/gateway"
)

// defaultSocket is where the packaged service (configs/wardgate.service)
// puts the admin socket; used when neither -c nor --socket is given.
const defaultSocket = "/run/wardgate/admin.sock"

// adminFlags are the flags every admin-socket command takes.
type adminFlags struct {
	config, socket *string
	json           *bool
}

func newAdminFlags(name string, stderr io.Writer) (*flag.FlagSet, *adminFlags) {
	fs := newFlags(name, stderr)
	return fs, &adminFlags{
		config: fs.String("c", "", "gateway.toml (its [admin] socket is used)"),
		socket: fs.String("socket", "", "admin socket path (default "+defaultSocket+")"),
		json:   fs.Bool("json", false, "print the gateway's JSON answer"),
	}
}

// socketPath finds the admin socket: --socket, else -c's [admin] socket,
// else defaultSocket. gateway.toml is read leniently (only [admin] socket),
// so that `wardgate reload` still reaches the gateway after someone broke
// another key of the file: the gateway then reports that as the error.
func (f *adminFlags) socketPath() (string, error) {
	if *f.socket != "" {
		return *f.socket, nil
	}
	if *f.config == "" {
		return defaultSocket, nil
	}
	var c struct {
		Policy string `toml:"policy"`
		Admin  struct {
			Socket string `toml:"socket"`
		} `toml:"admin"`
		Overlay map[string]any `toml:"overlay"`
	}
	if _, err := toml.DecodeFile(*f.config, &c); err != nil {
		return "", fmt.Errorf("%s: %w", *f.config, err)
	}
	s := c.Admin.Socket
	if s == "" && c.Policy == "" && c.Overlay != nil {
		return "", fmt.Errorf("%s is a policy.toml: give the gateway's gateway.toml (its [admin] socket is used) or --socket PATH", *f.config)
	}
	if s == "" {
		return "", fmt.Errorf("%s has no [admin] socket: the gateway serves no admin API", *f.config)
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(filepath.Dir(*f.config), s)
	}
	return s, nil
}

// adminClient talks HTTP to the admin socket.
type adminClient struct {
	socket string
	http   *http.Client
}

func newAdminClient(socket string) *adminClient {
	return &adminClient{socket: socket, http: &http.Client{
		Timeout: 60 * time.Second, // a reload loads, validates and tests the policy
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", socket)
		}},
	}}
}

// do makes one request and returns the status code and body. Failing to
// reach the socket is an error that names it.
func (c *adminClient) do(method, path string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://wardgate"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the gateway's admin socket %s: %w (is `wardgate run` running with this [admin] socket, and may you use the socket?)", c.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	return resp.StatusCode, body, nil
}

// get fetches path and decodes a 200 answer into v; the raw body is
// returned for --json.
func (c *adminClient) get(path string, v any) ([]byte, error) {
	code, body, err := c.do("GET", path)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("admin socket %s: GET %s: %d %s", c.socket, path, code, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("admin socket %s: GET %s: %w", c.socket, path, err)
	}
	return body, nil
}

// unwrapURL drops net/http's `Get "http://wardgate/v1/status":` prefix,
// which names a URL the user never typed.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// setupAdmin parses the flags of an admin command and returns a client.
func setupAdmin(name string, args []string, stderr io.Writer) (*adminClient, *adminFlags, int) {
	fs, f := newAdminFlags(name, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wardgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, nil, 2
	}
	sock, err := f.socketPath()
	if err != nil {
		fmt.Fprintf(stderr, "wardgate %s: %v\n", name, err)
		return nil, nil, 1
	}
	return newAdminClient(sock), f, 0
}

// cmdStatus shows the running gateway: site, policy, enforce mode (loud in
// audit mode), active flows, peers and site links.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	c, f, code := setupAdmin("status", args, stderr)
	if c == nil {
		return code
	}
	var st gateway.Status
	raw, err := c.get("/v1/status", &st)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate status: %v\n", err)
		return 1
	}
	if *f.json {
		stdout.Write(raw)
		return 0
	}
	printStatus(stdout, st, time.Now())
	return 0
}

// auditBanner is printed above and below the status of a gateway in audit
// mode: nobody should miss that it lets would-be denials through.
const auditBanner = "!!! AUDIT MODE: NOT ENFORCING POLICY — would-be denials are let through !!!"

func printStatus(w io.Writer, st gateway.Status, now time.Time) {
	audit := st.Enforce == "audit" || !st.Enforcing
	if audit {
		fmt.Fprintln(w, auditBanner)
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "site:\t%s (overlay %s, WireGuard port %d)\n", st.Site, st.Address, st.Port)
	fmt.Fprintf(tw, "policy:\t%s\n", st.Policy)
	fmt.Fprintf(tw, "policy hash:\t%s, loaded %s (%s)\n", st.PolicyHash, st.LoadedAt.Local().Format("2006-01-02 15:04:05 MST"), ago(now, st.LoadedAt))
	printSourceStatus(tw, st.PolicySource, now)
	mode := "enforce"
	if audit {
		mode = "AUDIT (not enforcing: would-be denials pass, logged as flow.audit)"
	}
	fmt.Fprintf(tw, "enforce:\t%s\n", mode)
	fmt.Fprintf(tw, "active flows:\t%d\n", st.ActiveFlows)
	if st.AuditWriteErrors > 0 {
		fmt.Fprintf(tw, "audit log:\tWRITE FAILURES: %d events lost (see the operational log)\n", st.AuditWriteErrors)
	}
	tw.Flush()

	fmt.Fprintf(w, "\npeers (%d):\n", len(st.Peers))
	if len(st.Peers) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tKIND\tADDRESS\tENDPOINT\tHANDSHAKE\tRX\tTX")
		for _, p := range st.Peers {
			ep := p.Endpoint
			if ep == "" {
				ep = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.Address, ep,
				ago(now, p.LastHandshake), humanBytes(p.RxBytes), humanBytes(p.TxBytes))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nsite links (%d):\n", len(st.SiteLinks))
	if len(st.SiteLinks) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SITE\tADDRESS\tHEALTHY\tPOLICY HASH\tPOLICY\tCHECKED\tERROR"+commitHeader(st))
		for _, l := range st.SiteLinks {
			healthy, same, hash := "no", "DIFFERENT", l.PolicyHash
			if l.Healthy {
				healthy = "yes"
			}
			if l.SameHash {
				same = "same"
			}
			if hash == "" {
				hash, same = "-", "unknown"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", l.Site, l.Address, healthy, hash, same, ago(now, l.CheckedAt), l.LastError, commitCell(st, l))
		}
		tw.Flush()
	}
	if len(st.Quarantined) > 0 {
		fmt.Fprintf(w, "\nquarantined (%d):\n", len(st.Quarantined))
		printQuarantined(w, "  ", st.Quarantined, now)
	}
	if len(st.Services) > 0 {
		fmt.Fprintf(w, "\nservices (%d):\n", len(st.Services))
		printServices(w, "  ", st.Services)
	}
	if audit {
		fmt.Fprintln(w)
		fmt.Fprintln(w, auditBanner)
	}
}

// cmdFlows lists the live flows.
func cmdFlows(args []string, stdout, stderr io.Writer) int {
	c, f, code := setupAdmin("flows", args, stderr)
	if c == nil {
		return code
	}
	var fl []gateway.FlowInfo
	raw, err := c.get("/v1/flows", &fl)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate flows: %v\n", err)
		return 1
	}
	if *f.json {
		stdout.Write(raw)
		return 0
	}
	printFlows(stdout, fl, time.Now())
	return 0
}

func printFlows(w io.Writer, fl []gateway.FlowInfo, now time.Time) {
	if len(fl) == 0 {
		fmt.Fprintln(w, "no live flows")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tIDENTITY\tSITE\tSERVICE\tPORT\tSRC\tDST\tRULE\tSTARTED\tIN\tOUT")
	for _, f := range fl {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Identity, f.Site, f.Service,
			f.Port, f.Proto, f.Src, f.Dst, f.Rule, ago(now, f.Start), humanBytes(uint64(max(f.BytesIn, 0))), humanBytes(uint64(max(f.BytesOut, 0))))
	}
	tw.Flush()
}

// cmdReload asks the gateway to reload gateway.toml and policy.toml. A
// refused reload prints its problems (file:line) and exits 1; the running
// policy then stays.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	c, f, code := setupAdmin("reload", args, stderr)
	if c == nil {
		return code
	}
	status, body, err := c.do("POST", "/v1/reload")
	if err != nil {
		fmt.Fprintf(stderr, "wardgate reload: %v\n", err)
		return 1
	}
	var res gateway.ReloadResult
	if err := json.Unmarshal(body, &res); err != nil {
		fmt.Fprintf(stderr, "wardgate reload: admin socket %s: %d %s\n", c.socket, status, strings.TrimSpace(string(body)))
		return 1
	}
	if *f.json {
		stdout.Write(body)
	}
	if status != http.StatusOK || !res.OK {
		if len(res.Problems) > 0 {
			for _, p := range res.Problems {
				fmt.Fprintf(stderr, "error: %s\n", p)
			}
		} else {
			fmt.Fprintf(stderr, "error: %s\n", res.Error)
		}
		fmt.Fprintln(stderr, "wardgate reload: refused; the gateway keeps running the previous policy")
		return 1
	}
	if !*f.json && res.ReloadChanges != nil {
		printReload(stdout, res.ReloadChanges)
	}
	return 0
}

// printReload says what a reload changed: the policy, the enforce mode
// (loudly when enforcement was turned off), peers, revoked flows.
func printReload(w io.Writer, ch *gateway.ReloadChanges) {
	if ch.PolicyHash == ch.PreviousHash {
		fmt.Fprintf(w, "reloaded: policy %s (unchanged)\n", ch.PolicyHash)
	} else {
		fmt.Fprintf(w, "reloaded: policy %s (was %s)\n", ch.PolicyHash, ch.PreviousHash)
	}
	printReloadCommit(w, ch)
	switch {
	case ch.Enforce != ch.PreviousEnforce && ch.Enforce == "audit":
		fmt.Fprintln(w, "enforce: audit (was enforce): THIS GATEWAY NO LONGER ENFORCES POLICY")
	case ch.Enforce != ch.PreviousEnforce:
		fmt.Fprintf(w, "enforce: %s (was %s)\n", ch.Enforce, ch.PreviousEnforce)
	}
	if len(ch.PeersAdded) > 0 {
		fmt.Fprintf(w, "peers added: %s\n", strings.Join(ch.PeersAdded, ", "))
	}
	if len(ch.PeersRemoved) > 0 {
		fmt.Fprintf(w, "peers removed: %s\n", strings.Join(ch.PeersRemoved, ", "))
	}
	fmt.Fprintf(w, "live flows revoked: %d\n", ch.Revoked)
}

// ago formats how long before now t was: "12s ago", "5m ago", "3h ago",
// "2d ago"; "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// humanBytes formats a byte count in binary units: "0 B", "812 B",
// "1.5 KiB", "23.0 MiB".
func humanBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	return ""
}
