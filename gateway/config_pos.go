package gateway

import (
	"strconv"
	"strings"
)

// keyLine finds the line of a dotted key ("dns.upstream", "site", or
// "listener[1].service" for the second [[listener]]) in a TOML file by
// scanning for the table header and then the key. A key that is not there
// gets its table's header line; 0 when neither is found.
// BurntSushi/toml keeps key positions private, and gateway.toml is small.
func keyLine(lines []string, dotted string) int {
	table, key := "", dotted
	if i := strings.LastIndexByte(dotted, '.'); i >= 0 {
		table, key = dotted[:i], dotted[i+1:]
	}
	index := 0 // which element of an array of tables
	if name, rest, ok := strings.Cut(table, "["); ok {
		table = name
		index, _ = strconv.Atoi(strings.TrimSuffix(rest, "]"))
	}
	cur, seen := "", -1 // seen counts the headers of table met so far
	if table == "" {
		seen = 0 // top-level keys come before any header
	}
	header := 0 // the line of the table's header: where a missing key belongs
	// lines, not a bufio.Scanner: it gives up at a 64 KB line, and a
	// hostile file has those; the position of the problem must still be
	// found. The caller splits the file once for all its problems.
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "[") {
			cur = strings.Trim(line, "[] ")
			if cur == table {
				if seen++; seen == index {
					header = n
				}
			}
			if cur == dotted {
				return n
			}
			continue
		}
		if cur != table || seen != index {
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			return n
		}
	}
	return header
}

func colOf(line int) int {
	if line == 0 {
		return 0
	}
	return 1
}
