package main

import (
	"fmt"
	"io"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/policysource"
)

// printSourceStatus adds the policy source to status: the commit running
// and, loudly, a gateway that is offline or behind its branch.
func printSourceStatus(tw io.Writer, ps *gateway.SourceStatus, now time.Time) {
	if ps == nil {
		return
	}
	fmt.Fprintf(tw, "policy source:\t%s %s:%s\n", ps.Repo, ps.Branch, ps.Path)
	commit := policysource.Short(ps.Commit)
	if ps.Subject != "" {
		commit += " " + fmt.Sprintf("%q", ps.Subject)
	}
	if ps.Signer != "" {
		commit += ", signed by " + ps.Signer
	}
	fmt.Fprintf(tw, "policy commit:\t%s\n", commit)
	switch {
	case ps.Offline:
		fmt.Fprintf(tw, "fetched:\tOFFLINE: the repository has not answered since start; running the last good policy kept in state_dir (%s)\n", ps.FetchErr)
	case ps.FetchErr != "":
		fmt.Fprintf(tw, "fetched:\t%s; LAST FETCH FAILED: %s\n", ago(now, ps.LastFetch), ps.FetchErr)
	default:
		fmt.Fprintf(tw, "fetched:\t%s\n", ago(now, ps.LastFetch))
	}
	if ps.Behind {
		fmt.Fprintf(tw, "behind:\tYES: the branch is at %s, refused: %s\n", policysource.Short(ps.Head), ps.RefusedBy)
	} else if ps.Refused != "" {
		fmt.Fprintf(tw, "last refused:\t%s: %s\n", policysource.Short(ps.Refused), ps.RefusedBy)
	}
}

// commitHeader and commitCell add a COMMIT column to the site links of a
// gateway that follows a repository: the commit each other gateway runs.
func commitHeader(st gateway.Status) string {
	if st.PolicySource == nil {
		return ""
	}
	return "\tCOMMIT"
}

func commitCell(st gateway.Status, l gateway.LinkStatus) string {
	if st.PolicySource == nil {
		return ""
	}
	c := policysource.Short(l.PolicyCommit)
	switch {
	case c == "":
		c = "-"
	case l.PolicyCommit != st.PolicySource.Commit:
		c += " DIFFERENT"
	}
	return "\t" + c
}

// printReloadCommit says which policy source commit a reload applied.
func printReloadCommit(w io.Writer, ch *gateway.ReloadChanges) {
	switch {
	case ch.Commit == "":
	case ch.Commit == ch.PreviousCommit:
		fmt.Fprintf(w, "commit: %s (unchanged)\n", policysource.Short(ch.Commit))
	default:
		fmt.Fprintf(w, "commit: %s (was %s)\n", policysource.Short(ch.Commit), policysource.Short(ch.PreviousCommit))
	}
}
