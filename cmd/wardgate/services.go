package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/wardgate/wardgate/gateway"
)

// cmdServices lists the policy's services: what a client types or
// resolves (DNS names, VIP), which site serves it, on which ports. It reads
// the files, not a running gateway, so it works in a config repository.
func cmdServices(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("services", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per service")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: wardgate services -c FILE [--json]")
		return 2
	}
	_, pol, err := loadAny(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	list := gateway.Services(pol)
	if *asJSON {
		b, err := json.Marshal(list)
		if err != nil {
			fmt.Fprintf(stderr, "wardgate services: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	printServices(stdout, "", list)
	return 0
}

// printServices writes the services as a table, each line after indent.
func printServices(w io.Writer, indent string, list []gateway.ServiceInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%sNAME\tSITE\tVIP\tPORTS\tDNS\n", indent)
	for _, s := range list {
		site, vip, names := dash(s.Site), dash(s.VIP), strings.Join(s.DNS, ",")
		if len(s.Egress) > 0 {
			names = "egress " + strings.Join(s.Egress, ",")
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", indent, s.Name, site, vip, strings.Join(s.Ports, ","), dash(names))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
