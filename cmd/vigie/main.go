// Command vigie is the one binary of Vigie, the consent and audit-ledger
// service for access to French shared health records.
//
// Usage:
//
//	vigie serve [flags]          run the service (embedded ledger by default)
//	vigie init [flags]           make a cluster's log once: its Trillian
//	                             tree and keys, pinned in the database
//	vigie verify [flags]         a patient verifies their history (or a receipt)
//	vigie audit [flags]          an auditor follows and verifies the log; a
//	                             regulator or DPO also replays decisions
//	                             and looks for misuse
//	vigie token --role R --sub S mint a token of the embedded issuer
//	vigie bench record [flags]   measure sustained recording on this machine
//	vigie directory import --rpps FILE --finess FILE
//	                             import the public directories (names)
//	vigie version                print the version (also vigie --version)
//	vigie health [flags]         exit 0 if a node is ready (a container's probe)
//	vigie backup --out FILE      copy a running embedded node's files
//	vigie restore ARCHIVE --data-dir NEW
//	                             restore a backup into a new directory
//
// Every flag can also be set through the environment: --data-dir is
// VIGIE_DATA_DIR, and so on; a flag on the command line wins. Run
// "vigie <command> --help" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"serve":          {"run the service", runServe},
	"init":           {"make a cluster's log once: its Trillian tree and keys, pinned in the database", runInit},
	"token":          {"mint a bearer token of the embedded issuer (for trying Vigie out)", runToken},
	"verify":         {"verify your access history, trusting only the log's key (a patient)", runVerify},
	"audit":          {"follow and verify the log; replay decisions and find misuse (an auditor)", runAudit},
	"bench":          {"measure Vigie on this machine (bench record)", runBench},
	"directory":      {"import the public directories of professionals (RPPS) and establishments (FINESS)", runDirectory},
	"version":        {"print the version", runVersion},
	"health":         {"exit 0 if a node is ready (/readyz): a container's probe", runHealth},
	"backup":         {"copy a running embedded node's files into one checked archive", runBackup},
	"restore":        {"check a backup archive and restore it into a new data directory", runRestore},
	"rotate-log-key": {"replace the log's checkpoint key by a transition checkpoint signed by both keys (every node stopped)", runRotateLogKey},
	"enrol":          {"issue a patient's one-time enrolment code, or revoke their enrolments (an administrator)", runEnrol},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		printVersion(stdout)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vigie: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Vigie: who read my health record, proven.")
	fmt.Fprintln(w, "\nUsage: vigie <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun \"vigie <command> --help\" for the flags of a command.")
}

// newFlagSet returns a command's own flag set: Trillian's packages register
// flags on the global set at init, and those must not reach vigie's users.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vigie "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vigie %s [flags]\n\nFlags (environment variable in brackets):\n", name)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s [%s]\n    \t%s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	return fs
}

func envName(flagName string) string {
	return "VIGIE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies VIGIE_* environment variables, then the command line.
// It returns exitOK with done set for --help, exitUsage for bad flags.
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintf(fs.Output(), "vigie: %v\n", envErr)
		return exitUsage, true
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "vigie: unexpected argument %q\n", fs.Arg(0))
		return exitUsage, true
	}
	return exitOK, false
}
