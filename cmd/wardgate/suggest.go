package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wardgate/wardgate/internal/enroll"
	"github.com/wardgate/wardgate/internal/suggest"
)

// maxReported is how many malformed audit lines suggest prints; the rest
// are counted.
const maxReported = 20

// cmdSuggest reads audit logs and proposes the rules that would allow what
// was denied (see internal/suggest): a policy.toml snippet on stdout, or,
// with --write FILE, the policy with the snippet appended, written only
// when it passes what `wardgate check` checks.
func cmdSuggest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("suggest", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml: the policy to propose against")
	threshold := fs.Float64("group-threshold", suggest.DefaultGroupThreshold, "share of a group's members that must have been seen for a proposal to name the group (0 < t <= 1)")
	write := fs.String("write", "", "write the policy with the proposals appended to this file (atomically; refused unless it passes check)")
	logs, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || len(logs) == 0 {
		fmt.Fprintln(stderr, "usage: wardgate suggest -c FILE [--group-threshold 0.5] [--write FILE] AUDIT.jsonl...   (- reads stdin)")
		return 2
	}
	if *threshold <= 0 || *threshold > 1 {
		fmt.Fprintf(stderr, "wardgate suggest: --group-threshold %v: want a share above 0, at most 1\n", *threshold)
		return 2
	}
	_, pol, err := loadAny(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	c := suggest.New(pol, suggest.Options{GroupThreshold: *threshold})
	malformed, lines := 0, 0
	var size int64
	start := time.Now()
	for _, name := range logs {
		st, n, err := readAuditFile(name, c, func(e *suggest.LineError) {
			if malformed++; malformed <= maxReported {
				fmt.Fprintf(stderr, "warning: %v (skipped)\n", e)
			}
		})
		if err != nil {
			fmt.Fprintf(stderr, "wardgate suggest: %v\n", err)
			return 1
		}
		lines += st.Lines
		size += n
	}
	if malformed > maxReported {
		fmt.Fprintf(stderr, "warning: %d more malformed lines skipped\n", malformed-maxReported)
	}
	took := time.Since(start)
	fmt.Fprintf(stderr, "read %s (%.1f MB) from %s in %v", plural(lines, "line", "lines"), float64(size)/1e6, plural(len(logs), "file", "files"), took.Round(100*time.Microsecond))
	if took >= time.Millisecond {
		fmt.Fprintf(stderr, " (%.0f MB/s)", float64(size)/1e6/took.Seconds())
	}
	fmt.Fprintln(stderr)

	res := c.Result()
	orig, err := os.ReadFile(pol.File())
	if err != nil {
		fmt.Fprintf(stderr, "wardgate suggest: %v\n", err)
		return 1
	}
	text, _, applyErr := res.Apply(pol.File(), orig)
	if *write == "" {
		res.WriteTOML(stdout)
		if applyErr != nil {
			printRefusal(stderr, "suggest", applyErr)
			return 1
		}
		return 0
	}
	if applyErr != nil {
		printRefusal(stderr, "suggest", fmt.Errorf("%s not written: %w", *write, applyErr))
		return 1
	}
	if err := enroll.WriteFileAtomic(*write, text); err != nil {
		fmt.Fprintf(stderr, "wardgate suggest: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s: %s with %s appended; it passes check\n", *write, pol.File(), plural(len(res.Proposals), "proposed rule", "proposed rules"))
	return 0
}

// plural is "1 rule", "2 rules".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// readAuditFile feeds one audit log (or stdin for "-") to c and returns
// how many bytes it read. A gzip-compressed log (a rotated
// audit.jsonl.1.gz) is read through gzip, so that `audit.jsonl*` may name
// every log there is.
func readAuditFile(name string, c *suggest.Collector, bad func(*suggest.LineError)) (suggest.ReadStats, int64, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return suggest.ReadStats{}, 0, err
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReader(r)
	r = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return suggest.ReadStats{}, 0, fmt.Errorf("%s: %w", name, err)
		}
		r = zr
	}
	cr := &countingReader{r: r}
	st, err := suggest.ReadAudit(cr, name, c.Add, bad)
	return st, cr.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
