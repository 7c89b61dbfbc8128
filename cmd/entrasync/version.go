package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCmd = &command{name: "version", summary: "print entrasync's version and the commit it was built from", run: printVersion,
	json: true, bare: true}

// version and commit are stamped by builds that carry no VCS information
// of their own: go build -ldflags "-X main.version=v1.2.0 -X main.commit=$(git rev-parse HEAD)".
// They are the only package variables: -X can set nothing else.
var (
	version string
	commit  string
)

// buildInfo is what a binary knows of its origin.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"` // built from a tree with uncommitted changes
	Go       string `json:"go"`
}

// readBuildInfo prefers what the Go toolchain stamped (the module version;
// vcs.revision and vcs.modified, unless built with -buildvcs=false), then
// the -X variables, else says "unknown".
func readBuildInfo() buildInfo {
	b := buildInfo{Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = version
	}
	if b.Commit == "" {
		b.Commit = commit
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (b buildInfo) String() string {
	s := fmt.Sprintf("entrasync %s, commit %s", b.Version, b.Commit)
	if b.Modified {
		s += " (modified)"
	}
	return s + ", " + b.Go
}

func printVersion(e *env, inv *invocation) error {
	b := readBuildInfo()
	if inv.json {
		return printJSON(e.stdout, b)
	}
	fmt.Fprintln(e.stdout, b)
	return nil
}
